// What the component's own controls do, for every view kind: the bar (layer and head pickers, then
// each view's pickers and toggles, then PNG), the keyboard, and PNG export of what is drawn.

function picker(name, n, value, names, onchange) {  // a labelled <select> of n choices
  const wrap = document.createElement("label");
  wrap.textContent = name + " ";
  const s = document.createElement("select");
  s.setAttribute("aria-label", name);
  s.className = "pick-" + name.toLowerCase();
  for (let i = 0; i < n; i++) s.add(new Option(names ? names[i] : String(i), String(i)));
  s.value = String(value);
  s.onchange = () => onchange(Number(s.value));
  wrap.append(s);
  return wrap;
}

function controlBar(ae, views) {
  const { $, d, v, L, H } = ae;
  const ctrls = [];
  if (L > 1) ctrls.push(picker("Layer", L, v.layer, d.layer_names, (x) => { v.layer = x; ae.update(); }));
  if (H > 1) ctrls.push(picker("Head", H, v.head, d.head_names, (x) => { v.head = x; ae.update(); }));
  for (const view of views) ctrls.push(...(view.pickers || []));
  for (const view of views) ctrls.push(...(view.toggles || []));
  const png = document.createElement("button");
  png.type = "button";
  png.textContent = "PNG";
  png.title = "Save what is drawn as a PNG";
  png.onclick = () => exportPng(ae, views);
  ctrls.push(png);
  $(".pickers").replaceChildren(...ctrls);
}

function syncPickers(ae) {  // the pickers show the view, however it was reached
  const { root, v } = ae;
  const sl = root.querySelector(".pick-layer"), sh = root.querySelector(".pick-head"), sq = root.querySelector(".pick-query");
  if (sl) sl.value = String(v.layer);
  if (sh) sh.value = String(v.head);
  if (sq) sq.value = v.query == null ? "" : String(v.query);
}

// Arrows: left/right the head, up/down the layer (with Shift, where a view picks a query: the
// query); then each view's own keys (the map: + and − zoom).
function onKeyDown(ae, views) {
  const { v, R } = ae;
  const moves = { ArrowLeft: [0, -1, 0], ArrowRight: [0, 1, 0], ArrowUp: [-1, 0, 0], ArrowDown: [1, 0, 0] };
  return (e) => {
    if (e.key in moves && !(e.target instanceof HTMLSelectElement)) {
      const [dl, dh] = moves[e.key];
      if (e.shiftKey && views.some((view) => view.picksQuery)) v.query = Math.max(0, Math.min(R - 1, (v.query ?? -1) + (dl || dh)));
      else { v.layer += dl; v.head += dh; }
      e.preventDefault(); ae.update();
    } else if (views.some((view) => view.onKey && view.onKey(e))) e.preventDefault();
  };
}

function exportPng(ae, views) {  // every view shown, one under the other
  const { d, v, th } = ae;
  const parts = views.filter((view) => view.on).map((view) => view.canvas);
  const w = Math.max(...parts.map((c) => c.width)), h = parts.reduce((s, c) => s + c.height, 0);
  const out = document.createElement("canvas");
  out.width = w; out.height = h;
  const ctx = out.getContext("2d");
  ctx.fillStyle = th.bg; ctx.fillRect(0, 0, w, h);
  let y = 0;
  for (const c of parts) { ctx.drawImage(c, 0, y); y += c.height; }
  const a = document.createElement("a");
  a.download = `${d.file_stem}_${d.layer_names[v.layer]}_${d.head_names[v.head]}.png`;
  a.href = out.toDataURL("image/png");
  a.click();
}
