// The image overlay ("image"): a picture with one layer's and head's attention row laid over its patch
// grid — the first query's row ([CLS]'s in a vision transformer) or a clicked patch's — exact value on
// hover, opacity, and every layer × head as small overlays above it (click one to look at it).
//
// Its part of the header, `image`: src (a data URI of the picture as the model saw it, at display size),
// rows, cols (the patch grid), first (the key of patch (0, 0): keys before it are not on the grid),
// opacity (the starting one) and, optionally, outline {name, cells: [[layer, head, [key, …]], …]}: a mask
// per map of query 0's rows (DINO's 60%-mass patches), drawn as an outline when that row is shown. The
// photo canvas's geometry is on its dataset (cell, left, top) for whoever needs to find a patch on screen.
// A row comes from the map sent exact, else from the rows sent for every layer and head (`rowOf`); a
// clicked patch whose rows were not sent is asked of the server (state "request": "row:<query>").

function imageView(ae) {
  const { root, $, d, v, th, L, H, C, say, stamp } = ae;
  const photo = $(".photo"), overlays = $(".overlays");
  const on = d.views.includes("image") && !!d.image;
  $(".image-view").style.display = on ? "" : "none";
  if (!on) return { on };
  const P = d.image, first = P.first, cells = P.rows * P.cols;
  if (v.opacity == null) v.opacity = P.opacity ?? 0.6;
  if (v.outline == null) v.outline = !!P.outline;
  if (v.query == null) v.query = d.state.query ?? 0;
  const outlines = new Map((P.outline ? P.outline.cells : []).map(([l, h, keys]) => [l * H + h, new Set(keys)]));
  const picture = new Image();
  picture.onload = () => draw();
  picture.src = P.src;
  const tip = $(".tip");
  const B = { size: 0, cell: 0, left: 30, top: 16, gap: 3, small: 0 };  // geometry of both canvases
  const qLabel = (q) => (q < first ? `‘${label(d.queries[q])}’` : `patch (${Math.floor((q - first) / P.cols)}, ${(q - first) % P.cols})`);

  const heats = new Map();  // each drawn row's colours, made once: (layer, head, query) → canvas
  function heat(layer, head, q) {
    const id = `${layer},${head},${q}`;
    if (!heats.has(id)) {
      const row = ae.rowOf(layer, head, q);
      if (!row) return null;
      let top = 0;
      for (let i = 0; i < cells; i++) top = Math.max(top, row[first + i]);
      const canvas = offscreen(scaleImage(P.rows, P.cols, (i) => (top > 0 ? row[first + i] / top : 0)));
      heats.set(id, { canvas, top });
    }
    return heats.get(id);
  }

  function drawGrid() {
    const show = L * H > 1;
    overlays.style.display = show ? "" : "none";
    if (!show) return;
    const width = Math.min(root.clientWidth || 700, 1000);  // the grid takes at most half of it
    B.small = Math.max(24, Math.min(56, Math.floor((width / 2 - B.left) / H) - B.gap));
    const s = B.small, sh = (s * P.rows) / P.cols;
    const w = B.left + H * (s + B.gap), h = B.top + L * (sh + B.gap);
    const ctx = fitCanvas(overlays, w, h);
    ctx.fillStyle = th.bg; ctx.fillRect(0, 0, w, h);
    ctx.fillStyle = th.text; ctx.font = "11px sans-serif"; ctx.textBaseline = "middle"; ctx.textAlign = "center";
    for (let head = 0; head < H; head++) ctx.fillText(d.head_names[head], B.left + head * (s + B.gap) + s / 2, B.top / 2);
    ctx.imageSmoothingEnabled = false;
    for (let layer = 0; layer < L; layer++) {
      const y = B.top + layer * (sh + B.gap);
      ctx.textAlign = "right"; ctx.fillStyle = th.text;
      ctx.fillText(d.layer_names[layer], B.left - 4, y + sh / 2);
      for (let head = 0; head < H; head++) {
        const x = B.left + head * (s + B.gap), hm = heat(layer, head, v.query);
        if (picture.complete && picture.naturalWidth) ctx.drawImage(picture, x, y, s, sh);
        ctx.globalAlpha = hm ? v.opacity : 0.55;
        if (hm) ctx.drawImage(hm.canvas, x, y, s, sh);
        else { ctx.fillStyle = th.grid; ctx.fillRect(x, y, s, sh); }
        ctx.globalAlpha = 1;
        if (layer === v.layer && head === v.head) {
          ctx.strokeStyle = th.primary; ctx.lineWidth = 3; ctx.strokeRect(x - 1.5, y - 1.5, s + 3, sh + 3);
        }
      }
    }
  }

  function drawPhoto() {
    const width = root.clientWidth || 700, beside = width - (overlays.offsetWidth || 0) - 24;
    B.size = Math.max(160, Math.min(480, beside >= 240 ? beside : width - 10));  // beside the grid if it fits
    B.cell = B.size / P.cols;
    const w = B.size, h = B.cell * P.rows, q = v.query;
    Object.assign(photo.dataset, { cell: B.cell, left: 0, top: 0, x0: 0, y0: 0 });  // to find a patch on screen
    const ctx = fitCanvas(photo, w, h);
    ctx.fillStyle = th.bg; ctx.fillRect(0, 0, w, h);
    if (picture.complete && picture.naturalWidth) ctx.drawImage(picture, 0, 0, w, h);
    const hm = heat(v.layer, v.head, q);
    ctx.imageSmoothingEnabled = false;
    if (hm) { ctx.globalAlpha = v.opacity; ctx.drawImage(hm.canvas, 0, 0, w, h); ctx.globalAlpha = 1; }
    const box = (i) => [(i % P.cols) * B.cell, Math.floor(i / P.cols) * B.cell];
    const mask = outlines.get(v.layer * H + v.head);
    if (v.outline && mask && q === 0) {  // the mask's border: edges between in and out
      ctx.strokeStyle = "#ff4b4b"; ctx.lineWidth = 2; ctx.beginPath();
      const inside = (r, c) => r >= 0 && c >= 0 && r < P.rows && c < P.cols && mask.has(first + r * P.cols + c);
      for (let i = 0; i < cells; i++) {
        const r = Math.floor(i / P.cols), c = i % P.cols;
        if (!inside(r, c)) continue;
        const [x, y] = box(i), e = B.cell;
        if (!inside(r - 1, c)) { ctx.moveTo(x, y); ctx.lineTo(x + e, y); }
        if (!inside(r + 1, c)) { ctx.moveTo(x, y + e); ctx.lineTo(x + e, y + e); }
        if (!inside(r, c - 1)) { ctx.moveTo(x, y); ctx.lineTo(x, y + e); }
        if (!inside(r, c + 1)) { ctx.moveTo(x + e, y); ctx.lineTo(x + e, y + e); }
      }
      ctx.stroke();
    }
    for (const [i, colour] of [[q - first, th.dark ? "#fff" : "#000"], [v.imageHover, "#fff"]]) {
      if (i == null || i < 0 || i >= cells) continue;
      const [x, y] = box(i);
      ctx.strokeStyle = colour; ctx.lineWidth = 2; ctx.strokeRect(x + 1, y + 1, B.cell - 2, B.cell - 2);
    }
    const title = `${d.title} — ${L * H > 1 ? `${d.layer_names[v.layer]} · ${d.head_names[v.head]} · ` : ""}rows of ${qLabel(q)}`;
    $(".title").textContent = title;
    if (!hm) {
      say(`The rows of ${qLabel(q)} are on their way from the server.`);
      ae.ask(`row:${q}`);
    } else if (v.imageHover == null) {
      const row = ae.rowOf(v.layer, v.head, q);
      const before = [...Array(first).keys()].map((k) => `→ ‘${label(d.keys[k])}’ ${exact(row[k])}`).join(" · ");
      say(`${qLabel(q)} ${before}; largest on a patch: ${exact(hm.top)}. Hover a patch for its weight, click it to see where it looks.`);
    }
  }

  function draw() { drawGrid(); drawPhoto(); stamp(); }

  const patchAt = (e) => {  // the grid index under the mouse, or null
    const r = photo.getBoundingClientRect();
    const c = Math.floor((e.clientX - r.left) / B.cell), row = Math.floor((e.clientY - r.top) / B.cell);
    return c >= 0 && c < P.cols && row >= 0 && row < P.rows ? row * P.cols + c : null;
  };
  photo.onmousemove = (e) => {
    const i = patchAt(e);
    v.imageHover = i;
    drawPhoto();
    stamp();
    if (i == null) { tip.style.display = "none"; return; }
    const row = ae.rowOf(v.layer, v.head, v.query), k = first + i;
    const text = `${qLabel(v.query)} → ${qLabel(k)} (key ${k}): ` + (row ? `${d.value_name} = ${exact(row[k])}` : "loading…");
    say(text);
    const rr = root.getBoundingClientRect();
    tip.textContent = text; tip.style.display = "block";
    tip.style.left = Math.min(e.clientX - rr.left + 12, rr.width - 260) + "px";
    tip.style.top = e.clientY - rr.top + 14 + "px";
  };
  photo.onmouseleave = () => { v.imageHover = null; tip.style.display = "none"; drawPhoto(); stamp(); };
  photo.onclick = (e) => {  // a patch: its rows; the same patch again: back to the first query's
    const i = patchAt(e);
    if (i == null) return;
    v.query = v.query === first + i ? 0 : first + i;
    ae.update();
  };
  overlays.onclick = (e) => {
    const r = overlays.getBoundingClientRect(), sh = (B.small * P.rows) / P.cols;
    const head = Math.floor((e.clientX - r.left - B.left) / (B.small + B.gap));
    const layer = Math.floor((e.clientY - r.top - B.top) / (sh + B.gap));
    if (layer >= 0 && layer < L && head >= 0 && head < H) { v.layer = layer; v.head = head; ae.update(); }
  };

  const opacity = document.createElement("label");
  opacity.innerHTML = 'Opacity <input type="range" class="opacity" min="0" max="1" step="0.05" aria-label="Overlay opacity">';
  opacity.lastChild.value = String(v.opacity);
  opacity.lastChild.oninput = (e) => { v.opacity = Number(e.target.value); draw(); };
  const toggles = [opacity];
  if (P.outline) {
    const outline = document.createElement("label");
    outline.innerHTML = '<input type="checkbox" class="outline"> ';
    outline.append(P.outline.name);
    outline.firstChild.checked = v.outline;
    outline.firstChild.onchange = (e) => { v.outline = e.target.checked; drawPhoto(); };
    toggles.push(outline);
  }
  const back = document.createElement("button");
  back.type = "button"; back.textContent = `rows of ${qLabel(0)}`;
  back.title = "Back to the first query's rows";
  back.onclick = () => { v.query = 0; ae.update(); };
  toggles.push(back);
  const shown = () => ae.rowOf(v.layer, v.head, v.query);
  return { on, canvas: photo, draw, toggles, picksQuery: true, shown };
}
