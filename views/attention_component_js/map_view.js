// The map ("map"): one layer's and head's weights, the exact value on hover, zoom (wheel, +/−,
// buttons) and pan (drag); token labels once a cell is tall enough to read them. Its geometry is on
// the canvas (dataset cell, left, top, x0, y0) for whoever needs to find a cell on screen.

function mapView(ae) {
  const { root, $, d, v, th, L, H, R, C, mapOf, request, say, stamp } = ae;
  const map = $(".map");
  const on = d.views.includes("map");
  map.style.display = on ? "" : "none";
  $(".map-tools").style.display = on ? "" : "none";
  if (!on) return { on };
  const tip = $(".tip");
  const M = { left: 0, top: 0, cell: 1, x0: 0, y0: 0, w: 0, h: 0 };
  const longest = (labels) => Math.min(140, 7 * Math.max(1, ...labels.map((t) => label(t).length)) + 30);
  const size = () => {
    const width = Math.min(root.clientWidth || 700, 1000);
    M.left = longest(d.queries); M.top = longest(d.keys);
    const fit = Math.max(1, Math.min(36, (width - M.left - 10) / C, 720 / R));
    if (!v.zoom) v.zoom = { cell: fit, x0: 0, y0: 0 };
    v.zoom.fit = fit;
    M.w = Math.min(width, M.left + C * fit + 10);
    M.h = M.top + R * fit + 10;
  };
  const images = new Map();  // each map's colours, drawn once (hover and zoom only redraw)
  const image = (layer, head, w, m) => {
    const id = (w ? "x" : "t") + (layer * H + head);
    if (!images.has(id)) {
      images.set(id, offscreen(w ? scaleImage(R, C, (i) => (m > 0 ? w[i] / m : 0)) : thumbImage(ae, layer, head)));
    }
    return images.get(id);
  };
  const maxOf = new Map();

  function draw() {
    size();
    const z = v.zoom, cell = z.cell;
    const ctx = fitCanvas(map, M.w, M.h);
    ctx.fillStyle = th.bg; ctx.fillRect(0, 0, M.w, M.h);
    const W = M.w - M.left - 10, Hh = M.h - M.top - 10;  // the plot area
    z.x0 = Math.max(0, Math.min(z.x0, C - W / cell)); z.y0 = Math.max(0, Math.min(z.y0, R - Hh / cell));
    Object.assign(M, { cell, x0: z.x0, y0: z.y0 });
    map.dataset.left = M.left; map.dataset.top = M.top; map.dataset.cell = cell;
    map.dataset.x0 = z.x0; map.dataset.y0 = z.y0;
    const w = mapOf(v.layer, v.head);
    const id = v.layer * H + v.head;
    if (w && !maxOf.has(id)) { let top = 0; for (const x of w) if (x > top) top = x; maxOf.set(id, top); }
    const m = w ? maxOf.get(id) : 0;
    const off = image(v.layer, v.head, w, m);
    ctx.save();
    ctx.beginPath(); ctx.rect(M.left, M.top, W, Hh); ctx.clip();
    ctx.imageSmoothingEnabled = false;
    const sx = off.width / C, sy = off.height / R;
    ctx.drawImage(off, z.x0 * sx, z.y0 * sy, (W / cell) * sx, (Hh / cell) * sy, M.left, M.top, W, Hh);
    const r0 = Math.floor(z.y0), r1 = Math.min(R, Math.ceil(z.y0 + Hh / cell));
    const c0 = Math.floor(z.x0), c1 = Math.min(C, Math.ceil(z.x0 + W / cell));
    const px = (c) => M.left + (c - z.x0) * cell, py = (r) => M.top + (r - z.y0) * cell;
    if (w && v.numbers && cell >= 22) {
      ctx.font = `${Math.min(11, cell / 2.6)}px sans-serif`; ctx.textAlign = "center"; ctx.textBaseline = "middle";
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) {
        const x = w[r * C + c];
        ctx.fillStyle = m > 0 && x / m > 0.6 ? "#000" : "#fff";
        ctx.fillText(x.toFixed(2), px(c + 0.5), py(r + 0.5));
      }
    }
    for (const [cells, colour, round] of [[d.gold.possible, "#ffb000", true], [d.gold.sure, "#ff4b4b", false]]) {
      ctx.strokeStyle = colour; ctx.lineWidth = 2.5;
      for (const [r, c] of cells) {
        ctx.beginPath();
        if (round) ctx.arc(px(c + 0.5), py(r + 0.5), cell * 0.3, 0, 2 * Math.PI);
        else ctx.rect(px(c) + 1.5, py(r) + 1.5, cell - 3, cell - 3);
        ctx.stroke();
      }
    }
    if (v.hover && cell >= 4) {
      ctx.strokeStyle = th.dark ? "#fff" : "#000"; ctx.lineWidth = 1.5;
      ctx.strokeRect(px(v.hover[1]), py(v.hover[0]), cell, cell);
    }
    ctx.restore();
    // token labels: every token once a cell is tall enough to read; else a hint to zoom
    ctx.fillStyle = th.text; ctx.font = `${Math.min(12, Math.max(9, cell - 2))}px sans-serif`;
    if (cell >= 9) {
      ctx.textAlign = "right"; ctx.textBaseline = "middle";
      for (let r = r0; r < r1; r++) ctx.fillText(`${label(d.queries[r])} ${r}`.slice(-24), M.left - 4, py(r + 0.5));
      for (let c = c0; c < c1; c++) {
        ctx.save(); ctx.translate(px(c + 0.5), M.top - 4); ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "left"; ctx.fillText(`${label(d.keys[c])} ${c}`.slice(-24), 0, 0); ctx.restore();
      }
    } else {
      ctx.textAlign = "left"; ctx.textBaseline = "top";
      ctx.fillText(`${R} × ${C}: zoom in (wheel, +) to read the tokens`, 4, 4);
    }
    ctx.font = "12px sans-serif"; ctx.textAlign = "left"; ctx.textBaseline = "bottom";
    $(".axes").textContent = `rows: ${d.axes[0]} · columns: ${d.axes[1]}`;
    $(".scale-max").textContent = w ? exact(m) : "…";
    $(".title").textContent = `${d.title}` + (L * H > 1 ? ` — ${d.layer_names[v.layer]} · ${d.head_names[v.head]}` : "");
    if (!w) { say("These colours are a preview; the exact values are on their way from the server."); request(v.layer, v.head); }
    stamp();
  }

  // --- hover: the exact value ---
  const cellAt = (e) => {  // [query, key] under the mouse, or null
    const r = map.getBoundingClientRect();
    const c = Math.floor((e.clientX - r.left - M.left) / M.cell + M.x0);
    const q = Math.floor((e.clientY - r.top - M.top) / M.cell + M.y0);
    const inside = e.clientX - r.left >= M.left && e.clientY - r.top >= M.top;
    return inside && q >= 0 && q < R && c >= 0 && c < C ? [q, c] : null;
  };
  map.onmousemove = (e) => {
    if (drag) { panTo(e); return; }
    const cell = cellAt(e);
    v.hover = cell;
    draw();
    if (!cell) { tip.style.display = "none"; return; }
    const w = mapOf(v.layer, v.head);
    const [q, k] = cell;
    const text = `${d.axes[0]} ${q} ‘${label(d.queries[q])}’ → ${d.axes[1]} ${k} ‘${label(d.keys[k])}’: `
      + (w ? `${d.value_name} = ${exact(w[q * C + k])}` : "exact value loading…");
    say(text);
    const r = root.getBoundingClientRect();
    tip.textContent = text;
    tip.style.display = "block";
    tip.style.left = Math.min(e.clientX - r.left + 12, r.width - 260) + "px";
    tip.style.top = e.clientY - r.top + 14 + "px";
  };
  map.onmouseleave = () => { v.hover = null; tip.style.display = "none"; draw(); };

  // --- zoom and pan ---
  const zoomBy = (f, cx, cy) => {
    const z = v.zoom, cell = Math.max(z.fit, Math.min(60, z.cell * f));
    const gx = z.x0 + cx / z.cell, gy = z.y0 + cy / z.cell;  // the cell under the cursor stays put
    z.x0 = gx - cx / cell; z.y0 = gy - cy / cell; z.cell = cell;
    draw();
  };
  map.onwheel = (e) => {
    e.preventDefault();
    const r = map.getBoundingClientRect();
    zoomBy(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - r.left - M.left, e.clientY - r.top - M.top);
  };
  let drag = null;
  const panTo = (e) => {
    v.zoom.x0 = drag.x0 - (e.clientX - drag.x) / v.zoom.cell;
    v.zoom.y0 = drag.y0 - (e.clientY - drag.y) / v.zoom.cell;
    draw();
  };
  map.onpointerdown = (e) => { drag = { x: e.clientX, y: e.clientY, x0: v.zoom.x0, y0: v.zoom.y0 }; };
  window.addEventListener("pointerup", () => { drag = null; });
  $(".zoom-in").onclick = () => zoomBy(1.5, 0, 0);
  $(".zoom-out").onclick = () => zoomBy(1 / 1.5, 0, 0);
  $(".zoom-fit").onclick = () => { v.zoom = null; draw(); };
  const onKey = (e) => {  // + (or =) and − zoom about the top left corner
    if (e.key === "+" || e.key === "=") zoomBy(1.5, 0, 0);
    else if (e.key === "-") zoomBy(1 / 1.5, 0, 0);
    else return false;
    return true;
  };

  const numbers = document.createElement("label");
  numbers.innerHTML = '<input type="checkbox" class="numbers"> numbers in cells';
  numbers.firstChild.checked = v.numbers;
  numbers.firstChild.onchange = (e) => { v.numbers = e.target.checked; draw(); };
  return { on, canvas: map, draw, toggles: [numbers], onKey };
}
