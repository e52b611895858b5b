// The attention explorer's one attention component (views/attention_component.py mounts it).
//
// It receives a run's maps once, as bytes: "AEX1", a uint32 header length, a JSON header, then the
// blocks — float32 maps (the model's own numbers, exact) and, where the run is larger than what is
// sent exact, uint8 thumbnails (colours only). Everything a look needs happens here: picking a layer,
// a head or a query, toggling heads, hovering, zooming, the keyboard, PNG export. Only a map that was
// not sent exact goes back to the server (state "request": "layer,head").

const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const HEAD_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"];
const LUT = (() => {  // 256 colours of the scale: colours are quantised, numbers never are
  const out = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (VIRIDIS.length - 1), a = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - a;
    for (let c = 0; c < 3; c++) out[i * 3 + c] = VIRIDIS[a][c] * (1 - f) + VIRIDIS[a + 1][c] * f;
  }
  return out;
})();

// The shortest decimal that reads back as the same float32: what numpy prints for a float32.
function exact(x) {
  if (!Number.isFinite(x)) return String(x);
  for (let p = 1; p <= 9; p++) {
    const s = x.toPrecision(p);
    if (Math.fround(Number(s)) === x) return String(Number(s));
  }
  return String(x);
}

function decode(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (String.fromCharCode(...u8.subarray(0, 4)) !== "AEX1") throw new Error("not an attention payload");
  const n = new DataView(u8.buffer, u8.byteOffset, 8).getUint32(4, true);
  const head = JSON.parse(new TextDecoder().decode(u8.subarray(8, 8 + n)));
  const body = u8.slice(8 + n);  // a copy: aligned for Float32Array
  const size = head.rows * head.cols;
  head.exactMaps = new Map();
  for (const [layer, h, offset] of head.exact) {
    head.exactMaps.set(layer * head.heads + h, new Float32Array(body.buffer, offset, size));
  }
  head.thumbData = head.thumbs ? new Uint8Array(body.buffer, head.thumbs.offset,
    head.layers * head.heads * head.thumbs.rows * head.thumbs.cols) : null;
  return head;
}

function theme(el) {
  const css = getComputedStyle(el);
  const bg = css.getPropertyValue("--st-background-color").trim() || "#ffffff";
  const text = css.getPropertyValue("--st-text-color").trim() || "#31333f";
  const primary = css.getPropertyValue("--st-primary-color").trim() || "#5b3cc4";
  const probe = document.createElement("canvas").getContext("2d");
  probe.fillStyle = bg;
  const hex = probe.fillStyle;  // normalised to #rrggbb
  const lum = hex.startsWith("#") ? (parseInt(hex.slice(1, 3), 16) + parseInt(hex.slice(3, 5), 16)
    + parseInt(hex.slice(5, 7), 16)) / 3 : 255;
  return { bg, text, primary, dark: lum < 110, grid: lum < 110 ? "#444" : "#ddd" };
}

function label(t) { return t.trim() ? t : "␣"; }

function fitCanvas(canvas, w, h) {
  const r = window.devicePixelRatio || 1;
  canvas.width = Math.round(w * r);
  canvas.height = Math.round(h * r);
  canvas.style.width = w + "px";
  canvas.style.height = h + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(r, 0, 0, r, 0, 0);
  return ctx;
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const root = parentElement.querySelector(".ae");
  root.dataset.received = String(performance.now());  // for the benchmark: data in → drawn
  let d;
  try {
    d = decode(data);
  } catch (err) {
    root.textContent = "The attention view could not read its data: " + err.message;
    return;
  }
  const L = d.layers, H = d.heads, R = d.rows, C = d.cols;
  // View state lives on the element: a rerun that sends new data keeps what the visitor picked,
  // unless the server's own pick (a page's layer/head select) changed.
  const prev = parentElement.__ae;
  const serverPick = JSON.stringify(d.state);
  const keep = prev && prev.serverPick === serverPick && prev.L === L && prev.H === H && prev.R === R && prev.C === C;
  const v = keep ? prev : {
    layer: d.state.layer, head: d.state.head, query: d.state.query, heads: new Set([...Array(H).keys()]),
    zoom: null, numbers: !!d.numbers, hover: null,
  };
  Object.assign(v, { serverPick, L, H, R, C });
  parentElement.__ae = v;
  const th = theme(root);
  root.classList.toggle("dark", th.dark);
  const $ = (s) => root.querySelector(s);
  const readout = $(".readout");
  const tip = $(".tip");

  const mapOf = (layer, head) => d.exactMaps.get(layer * H + head) || null;
  const thumbOf = (layer, head) => {
    if (!d.thumbData) return null;
    const n = d.thumbs.rows * d.thumbs.cols, i = (layer * H + head) * n;
    return d.thumbData.subarray(i, i + n);
  };
  const requested = new Set();
  const request = (layer, head) => {  // a map not sent exact: ask the server once
    const id = `${layer},${head}`;
    if (requested.has(id)) return;
    requested.add(id);
    setStateValue("request", id);
  };
  const writeUrl = () => {  // the view in the URL, like the other view state
    if (!d.url) return;
    try {
      const u = new URL(window.location.href);
      u.searchParams.set(d.url, [v.layer, v.head, v.query ?? ""].join("."));
      window.history.replaceState(window.history.state, "", u);
    } catch (e) { /* a sandboxed frame: the view just is not in the URL */ }
  };

  // --- pickers ----------------------------------------------------------------------------------
  const pickers = $(".pickers");
  const select = (name, n, value, names, onchange) => {
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
  };
  const ctrls = [];
  if (L > 1) ctrls.push(select("Layer", L, v.layer, d.layer_names, (x) => { v.layer = x; update(); }));
  if (H > 1) ctrls.push(select("Head", H, v.head, d.head_names, (x) => { v.head = x; update(); }));
  if (d.views.includes("lines")) {
    const wrap = document.createElement("label");
    wrap.textContent = "Lines from ";
    const s = document.createElement("select");
    s.setAttribute("aria-label", "Lines from query");
    s.className = "pick-query";
    s.add(new Option("all queries", ""));
    d.queries.forEach((q, i) => s.add(new Option(`${i}: ${label(q)}`, String(i))));
    s.value = v.query == null ? "" : String(v.query);
    s.onchange = () => { v.query = s.value === "" ? null : Number(s.value); update(); };
    wrap.append(s);
    ctrls.push(wrap);
  }
  const numbers = document.createElement("label");
  numbers.innerHTML = '<input type="checkbox" class="numbers"> numbers in cells';
  numbers.firstChild.checked = v.numbers;
  numbers.firstChild.onchange = (e) => { v.numbers = e.target.checked; drawMap(); };
  if (d.views.includes("map")) ctrls.push(numbers);
  const png = document.createElement("button");
  png.type = "button";
  png.textContent = "PNG";
  png.title = "Save what is drawn as a PNG";
  png.onclick = () => exportPng();
  ctrls.push(png);
  pickers.replaceChildren(...ctrls);

  // --- the model view: every layer × head ------------------------------------------------------
  const grid = $(".grid");
  const gridOn = d.views.includes("model") && L * H > 1;
  grid.style.display = gridOn ? "" : "none";
  const G = { size: 0, left: 34, top: 18, gap: 4 };
  const thumbImage = (layer, head) => {  // an ImageData of the thumbnail (max-pooled, own max)
    const exactMap = mapOf(layer, head);
    let tr, tc, vals;
    if (exactMap) {
      tr = Math.min(R, d.thumb_side); tc = Math.min(C, d.thumb_side);
      vals = new Float32Array(tr * tc);
      for (let r = 0; r < R; r++) {
        const rr = Math.floor((r * tr) / R);
        for (let c = 0; c < C; c++) {
          const cc = Math.floor((c * tc) / C), x = exactMap[r * C + c];
          if (x > vals[rr * tc + cc]) vals[rr * tc + cc] = x;
        }
      }
      let m = 0;
      for (const x of vals) m = Math.max(m, x);
      vals = vals.map((x) => (m > 0 ? x / m : 0));
    } else {
      tr = d.thumbs.rows; tc = d.thumbs.cols;
      vals = Array.from(thumbOf(layer, head), (x) => x / 255);
    }
    const img = new ImageData(tc, tr);
    vals.forEach((x, i) => {
      const k = Math.round(x * 255) * 3;
      img.data[i * 4] = LUT[k]; img.data[i * 4 + 1] = LUT[k + 1]; img.data[i * 4 + 2] = LUT[k + 2];
      img.data[i * 4 + 3] = 255;
    });
    return img;
  };
  const thumbs = new Map();  // each thumbnail drawn once
  const thumbCanvas = (layer, head) => {
    const id = (mapOf(layer, head) ? "x" : "t") + (layer * H + head);
    if (!thumbs.has(id)) {
      const img = thumbImage(layer, head), off = document.createElement("canvas");
      off.width = img.width; off.height = img.height;
      off.getContext("2d").putImageData(img, 0, 0);
      thumbs.set(id, off);
    }
    return thumbs.get(id);
  };
  const stamp = () => { root.dataset.drawn = String(performance.now()); };
  const drawGrid = () => {
    if (!gridOn) return;
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
  };
  const gridCell = (e) => {
    const r = grid.getBoundingClientRect();
    const head = Math.floor((e.clientX - r.left - G.left) / (G.size + G.gap));
    const layer = Math.floor((e.clientY - r.top - G.top) / (G.size + G.gap));
    return layer >= 0 && layer < L && head >= 0 && head < H ? [layer, head] : null;
  };
  grid.onclick = (e) => { const c = gridCell(e); if (c) { [v.layer, v.head] = c; update(); } };
  grid.onmousemove = (e) => {
    const c = gridCell(e);
    grid.style.cursor = c ? "pointer" : "default";
    if (c) say(`${d.layer_names[c[0]]} ${d.head_names[c[1]]}: click to zoom`
      + (mapOf(...c) ? "" : " (its exact values come from the server)"));
  };

  // --- the map: one layer's and head's weights, exact on hover, zoom and pan ----------------------
  const map = $(".map");
  const mapOn = d.views.includes("map");
  map.style.display = mapOn ? "" : "none";
  const M = { left: 0, top: 0, cell: 1, x0: 0, y0: 0, w: 0, h: 0 };
  const longest = (labels) => Math.min(140, 7 * Math.max(1, ...labels.map((t) => label(t).length)) + 30);
  const mapSize = () => {
    const width = Math.min(root.clientWidth || 700, 1000);
    M.left = longest(d.queries); M.top = longest(d.keys);
    const fit = Math.max(1, Math.min(36, (width - M.left - 10) / C, 720 / R));
    if (!v.zoom) v.zoom = { cell: fit, x0: 0, y0: 0 };
    v.zoom.fit = fit;
    M.w = Math.min(width, M.left + C * fit + 10);
    M.h = M.top + R * fit + 10;
  };
  const images = new Map();  // each map's colours, drawn once (hover and zoom only redraw)
  const mapImage = (layer, head, w, m) => {
    const id = (w ? "x" : "t") + (layer * H + head);
    if (images.has(id)) return images.get(id);
    const off = document.createElement("canvas");
    let img;
    if (w) {
      img = new ImageData(C, R);
      for (let i = 0; i < R * C; i++) {
        const k = Math.round((m > 0 ? w[i] / m : 0) * 255) * 3;
        img.data[i * 4] = LUT[k]; img.data[i * 4 + 1] = LUT[k + 1]; img.data[i * 4 + 2] = LUT[k + 2];
        img.data[i * 4 + 3] = 255;
      }
    } else img = thumbImage(layer, head);
    off.width = img.width; off.height = img.height;
    off.getContext("2d").putImageData(img, 0, 0);
    images.set(id, off);
    return off;
  };
  const maxOf = new Map();
  const drawMap = () => {
    if (!mapOn) return;
    mapSize();
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
    const off = mapImage(v.layer, v.head, w, m);
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
  };
  const mapCell = (e) => {
    const r = map.getBoundingClientRect();
    const c = Math.floor((e.clientX - r.left - M.left) / M.cell + M.x0);
    const q = Math.floor((e.clientY - r.top - M.top) / M.cell + M.y0);
    const inside = e.clientX - r.left >= M.left && e.clientY - r.top >= M.top;
    return inside && q >= 0 && q < R && c >= 0 && c < C ? [q, c] : null;
  };
  map.onmousemove = (e) => {
    if (drag) { panTo(e); return; }
    const cell = mapCell(e);
    v.hover = cell;
    drawMap();
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
  map.onmouseleave = () => { v.hover = null; tip.style.display = "none"; drawMap(); };
  const zoomBy = (f, cx, cy) => {
    const z = v.zoom, cell = Math.max(z.fit, Math.min(60, z.cell * f));
    const gx = z.x0 + cx / z.cell, gy = z.y0 + cy / z.cell;  // the cell under the cursor stays put
    z.x0 = gx - cx / cell; z.y0 = gy - cy / cell; z.cell = cell;
    drawMap();
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
    drawMap();
  };
  map.onpointerdown = (e) => { drag = { x: e.clientX, y: e.clientY, x0: v.zoom.x0, y0: v.zoom.y0 }; };
  window.addEventListener("pointerup", () => { drag = null; });
  $(".zoom-in").onclick = () => zoomBy(1.5, 0, 0);
  $(".zoom-out").onclick = () => zoomBy(1 / 1.5, 0, 0);
  $(".zoom-fit").onclick = () => { v.zoom = null; drawMap(); };
  $(".map-tools").style.display = mapOn ? "" : "none";

  // --- the head view: lines from queries to keys, one colour per head -----------------------------
  const lines = $(".lines");
  const linesOn = d.views.includes("lines");
  lines.style.display = linesOn ? "" : "none";
  const chips = $(".chips");
  const ROW = 16, LX = 170, GAP = 200;
  const drawLines = () => {
    if (!linesOn) return;
    chips.replaceChildren(...[...Array(H).keys()].map((h) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "chip" + (v.heads.has(h) ? " on" : "");
      b.style.setProperty("--c", HEAD_COLOURS[h % HEAD_COLOURS.length]);
      b.textContent = d.head_names[h];
      b.title = "Toggle this head (double-click: this head alone)";
      b.onclick = () => { v.heads.has(h) ? v.heads.delete(h) : v.heads.add(h); drawLines(); };
      b.ondblclick = () => { v.heads = new Set([h]); drawLines(); };
      return b;
    }));
    const n = Math.max(R, C), w = 2 * LX + GAP, h = n * ROW + 10;
    const ctx = fitCanvas(lines, w, h);
    ctx.fillStyle = th.bg; ctx.fillRect(0, 0, w, h);
    const focus = v.lineHover ?? v.query;
    const missing = [];
    ctx.lineWidth = 2;
    for (const head of v.heads) {
      const wm = mapOf(v.layer, head);
      if (!wm) { missing.push(head); continue; }
      ctx.strokeStyle = HEAD_COLOURS[head % HEAD_COLOURS.length];
      for (let q = 0; q < R; q++) {
        if (focus != null && q !== focus) continue;
        for (let k = 0; k < C; k++) {
          const x = wm[q * C + k];
          if (x < (focus == null ? 0.05 : 0.01)) continue;
          ctx.globalAlpha = Math.min(1, x);
          ctx.beginPath(); ctx.moveTo(LX, q * ROW + ROW / 2 + 5); ctx.lineTo(LX + GAP, k * ROW + ROW / 2 + 5); ctx.stroke();
        }
      }
    }
    ctx.globalAlpha = 1; ctx.fillStyle = th.text; ctx.font = "12px sans-serif"; ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    d.queries.forEach((t, q) => {
      ctx.font = (q === focus ? "bold " : "") + "12px sans-serif";
      ctx.fillText(`${label(t)} ${q}`.slice(-22), LX - 6, q * ROW + ROW / 2 + 5);
    });
    ctx.textAlign = "left"; ctx.font = "12px sans-serif";
    d.keys.forEach((t, k) => ctx.fillText(`${k} ${label(t)}`.slice(0, 22), LX + GAP + 6, k * ROW + ROW / 2 + 5));
    if (missing.length) request(v.layer, missing[0]);
    $(".lines-note").textContent = (missing.length ? `Heads ${missing.map((x) => d.head_names[x]).join(", ")}: `
      + "exact values on their way from the server. " : "")
      + "Left: queries; right: keys. Opacity ∝ weight (≥ 0.05 drawn; a picked query: ≥ 0.01). "
      + "Hover a query to see its lines alone, click it to keep them.";
    stamp();
  };
  const lineQuery = (e) => {
    const r = lines.getBoundingClientRect(), x = e.clientX - r.left;
    const q = Math.floor((e.clientY - r.top - 5) / ROW);
    return x < LX && q >= 0 && q < R ? q : null;
  };
  lines.onmousemove = (e) => {
    const q = lineQuery(e);
    if (q === (v.lineHover ?? null)) return;
    v.lineHover = q;
    drawLines();
    if (q != null) {
      const parts = [...v.heads].filter((h) => mapOf(v.layer, h)).map((h) => {
        const wm = mapOf(v.layer, h);
        let best = 0;
        for (let k = 1; k < C; k++) if (wm[q * C + k] > wm[q * C + best]) best = k;
        return `${d.head_names[h]} → ${best} ‘${label(d.keys[best])}’ ${exact(wm[q * C + best])}`;
      });
      say(`query ${q} ‘${label(d.queries[q])}’, strongest key per head: ${parts.join(" · ")}`);
    }
  };
  lines.onmouseleave = () => { v.lineHover = null; drawLines(); };
  lines.onclick = (e) => {
    const q = lineQuery(e);
    v.query = q === v.query ? null : q;
    update();
  };

  // --- everything together ------------------------------------------------------------------------
  function say(text) { readout.textContent = text; }
  function update() {
    v.layer = Math.max(0, Math.min(L - 1, v.layer)); v.head = Math.max(0, Math.min(H - 1, v.head));
    if (v.query != null) v.query = Math.max(0, Math.min(R - 1, v.query));
    const sl = root.querySelector(".pick-layer"), sh = root.querySelector(".pick-head"), sq = root.querySelector(".pick-query");
    if (sl) sl.value = String(v.layer);
    if (sh) sh.value = String(v.head);
    if (sq) sq.value = v.query == null ? "" : String(v.query);
    drawGrid(); drawMap(); drawLines();
    writeUrl();
    root.dataset.layer = v.layer; root.dataset.head = v.head; root.dataset.query = v.query ?? "";
    root.shown = mapOf(v.layer, v.head);  // the exact map drawn (null while it is a preview): for tests
    stamp();
  }
  function exportPng() {
    const parts = [gridOn && grid, mapOn && map, linesOn && lines].filter(Boolean);
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
  root.onkeydown = (e) => {
    const moves = { ArrowLeft: [0, -1, 0], ArrowRight: [0, 1, 0], ArrowUp: [-1, 0, 0], ArrowDown: [1, 0, 0] };
    if (e.key in moves && !(e.target instanceof HTMLSelectElement)) {
      const [dl, dh] = moves[e.key];
      if (e.shiftKey && linesOn) v.query = Math.max(0, Math.min(R - 1, (v.query ?? -1) + (dl || dh)));
      else { v.layer += dl; v.head += dh; }
      e.preventDefault(); update();
    } else if (e.key === "+" || e.key === "=") { zoomBy(1.5, 0, 0); e.preventDefault(); }
    else if (e.key === "-") { zoomBy(1 / 1.5, 0, 0); e.preventDefault(); }
  };
  update();
}
