// The model view ("model"): every layer × head as a thumbnail; click one to look at it.

function modelView(ae) {
  const { root, $, d, v, th, L, H, mapOf, say, stamp } = ae;
  const grid = $(".grid");
  const on = d.views.includes("model") && L * H > 1;
  grid.style.display = on ? "" : "none";
  if (!on) return { on };
  const G = { size: 0, left: 34, top: 18, gap: 4 };
  const thumbs = new Map();  // each thumbnail drawn once
  const thumbCanvas = (layer, head) => {
    const id = (mapOf(layer, head) ? "x" : "t") + (layer * H + head);
    if (!thumbs.has(id)) thumbs.set(id, offscreen(thumbImage(ae, layer, head)));
    return thumbs.get(id);
  };

  function draw() {
    const width = Math.min(root.clientWidth || 700, 1000);
    G.size = Math.max(14, Math.min(90, Math.floor((width - G.left) / H) - G.gap));
    const w = G.left + H * (G.size + G.gap), h = G.top + L * (G.size + G.gap);
    const ctx = fitCanvas(grid, w, h);
    ctx.fillStyle = th.bg; ctx.fillRect(0, 0, w, h);
    ctx.fillStyle = th.text; ctx.font = "11px sans-serif"; ctx.textBaseline = "middle";
    for (let layer = 0; layer < L; layer++) {
      ctx.textAlign = "right";
      ctx.fillText(d.layer_names[layer], G.left - 4, G.top + layer * (G.size + G.gap) + G.size / 2);
      for (let head = 0; head < H; head++) {
        const off = thumbCanvas(layer, head);
        const x = G.left + head * (G.size + G.gap), y = G.top + layer * (G.size + G.gap);
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(off, x, y, G.size, G.size);
        if (layer === v.layer && head === v.head) {
          ctx.strokeStyle = th.primary; ctx.lineWidth = 3; ctx.strokeRect(x - 1.5, y - 1.5, G.size + 3, G.size + 3);
        }
      }
    }
    ctx.textAlign = "center";
    for (let head = 0; head < H; head++) {
      ctx.fillText(d.head_names[head], G.left + head * (G.size + G.gap) + G.size / 2, G.top / 2);
    }
    stamp();
  }

  const cellAt = (e) => {  // [layer, head] under the mouse, or null
    const r = grid.getBoundingClientRect();
    const head = Math.floor((e.clientX - r.left - G.left) / (G.size + G.gap));
    const layer = Math.floor((e.clientY - r.top - G.top) / (G.size + G.gap));
    return layer >= 0 && layer < L && head >= 0 && head < H ? [layer, head] : null;
  };
  grid.onclick = (e) => { const c = cellAt(e); if (c) { [v.layer, v.head] = c; ae.update(); } };
  grid.onmousemove = (e) => {
    const c = cellAt(e);
    grid.style.cursor = c ? "pointer" : "default";
    if (c) say(`${d.layer_names[c[0]]} ${d.head_names[c[1]]}: click to zoom`
      + (mapOf(...c) ? "" : " (its exact values come from the server)"));
  };
  return { on, canvas: grid, draw };
}
