// What a run sent and what the visitor looks at: the payload decoded, the view state kept on the
// element, and the context `ae` every view kind draws from (views/attention_component_js/main.js
// says what it holds).
//
// The payload (views/attention_component.py, `payload`): "AEX1", a uint32 header length, a JSON
// header, then the blocks — float32 rows (one query's row of every layer and head, where a view asks
// for them), float32 maps (the model's own numbers, exact) and, where the run is larger than what is
// sent exact, uint8 thumbnails (colours only).

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
  head.rowBlocks = new Map();  // query → (layers × heads × cols) float32: that query's row everywhere
  for (const [query, offset] of head.row_blocks || []) {
    head.rowBlocks.set(query, new Float32Array(body.buffer, offset, head.layers * head.heads * head.cols));
  }
  head.thumbData = head.thumbs ? new Uint8Array(body.buffer, head.thumbs.offset,
    head.layers * head.heads * head.thumbs.rows * head.thumbs.cols) : null;
  return head;
}

// View state lives on the element: a rerun that sends new data keeps what the visitor picked,
// unless the server's own pick (a page's layer/head select) changed.
function viewState(parentElement, d) {
  const L = d.layers, H = d.heads, R = d.rows, C = d.cols;
  const prev = parentElement.__ae;
  const serverPick = JSON.stringify(d.state);
  const keep = prev && prev.serverPick === serverPick && prev.L === L && prev.H === H && prev.R === R && prev.C === C;
  const v = keep ? prev : {
    layer: d.state.layer, head: d.state.head, query: d.state.query, heads: new Set([...Array(H).keys()]),
    zoom: null, numbers: !!d.numbers, hover: null,
  };
  Object.assign(v, { serverPick, L, H, R, C });
  parentElement.__ae = v;
  return v;
}

function context(component, root, d) {
  const { parentElement, setStateValue } = component;
  const H = d.heads;
  const v = viewState(parentElement, d);
  const th = theme(root);
  root.classList.toggle("dark", th.dark);
  const $ = (s) => root.querySelector(s);
  const readout = $(".readout");
  const requested = new Set();
  const ask = (id) => {  // something not sent exact: ask the server once (a rerun of the view's fragment)
    if (requested.has(id)) return;
    requested.add(id);
    setStateValue("request", id);
  };
  const mapOf = (layer, head) => d.exactMaps.get(layer * H + head) || null;
  return {
    root, $, d, v, th, L: d.layers, H, R: d.rows, C: d.cols, mapOf, ask,
    rowOf: (layer, head, query) => {  // one query's exact row: from its map, else from the rows sent
      const map = mapOf(layer, head);
      if (map) return map.subarray(query * d.cols, (query + 1) * d.cols);
      const rows = d.rowBlocks.get(query);
      if (!rows) return null;
      const i = (layer * H + head) * d.cols;
      return rows.subarray(i, i + d.cols);
    },
    thumbOf: (layer, head) => {
      if (!d.thumbData) return null;
      const n = d.thumbs.rows * d.thumbs.cols, i = (layer * H + head) * n;
      return d.thumbData.subarray(i, i + n);
    },
    request: (layer, head) => ask(`${layer},${head}`),  // a map not sent exact
    say: (text) => { readout.textContent = text; },
    stamp: () => { root.dataset.drawn = String(performance.now()); },
    update: null,  // main.js sets it: redraw every view after the layer, head or query changed
  };
}

// A map's thumbnail on the colour scale (max-pooled, scaled to its own largest weight): from its
// exact numbers when they came, else the server's uint8 thumbnail. Colours only, never a number.
function thumbImage(ae, layer, head) {
  const { d, R, C } = ae;
  const exactMap = ae.mapOf(layer, head);
  if (!exactMap) {
    const small = ae.thumbOf(layer, head);
    return scaleImage(d.thumbs.rows, d.thumbs.cols, (i) => small[i] / 255);
  }
  const tr = Math.min(R, d.thumb_side), tc = Math.min(C, d.thumb_side);
  let vals = new Float32Array(tr * tc);
  for (let r = 0; r < R; r++) {
    const rr = Math.floor((r * tr) / R);
    for (let c = 0; c < C; c++) {
      const cc = Math.floor((c * tc) / C), x = exactMap[r * C + c];
      if (x > vals[rr * tc + cc]) vals[rr * tc + cc] = x;
    }
  }
  let m = 0;
  for (const x of vals) m = Math.max(m, x);
  vals = vals.map((x) => (m > 0 ? x / m : 0));  // float32, as the colours were always computed
  return scaleImage(tr, tc, (i) => vals[i]);
}

function writeUrl(ae) {  // the view in the URL, like the other view state
  const { d, v } = ae;
  if (!d.url) return;
  try {
    const u = new URL(window.location.href);
    u.searchParams.set(d.url, [v.layer, v.head, v.query ?? ""].join("."));
    window.history.replaceState(window.history.state, "", u);
  } catch (e) { /* a sandboxed frame: the view just is not in the URL */ }
}
