// The attention explorer's one attention component (views/attention_component.py mounts it): the
// entry point. attention_component.py joins this folder's files into one module, in its JS_PARTS
// order (this file last), so each file's top-level names are visible to the files after it.
//
// It receives a run's maps once, as bytes (data.js). Everything a look needs happens here: picking a
// layer, a head or a query, toggling heads, hovering, zooming, the keyboard, PNG export. Only a map
// that was not sent exact goes back to the server (state "request": "layer,head").
//
// The shared context `ae` (data.js, `context`): root and $ (its querySelector), d (the payload's
// header and maps), v (the view state: layer, head, query, heads toggled, zoom, …, kept across
// reruns), th (the theme), L, H, R, C (layers, heads, rows, columns), mapOf(layer, head) (the exact
// float32 map or null), rowOf(layer, head, query) (one exact row: from its map or the rows sent, or
// null), thumbOf, request(layer, head) (ask the server for a map not sent exact), ask(id) (any request),
// say(text) (the readout), stamp() (data-drawn), update() (after the layer, head or query changed:
// clamp them, redraw every view, write the URL and the root's data-layer/-head/-query and `shown`).
//
// A view kind is one file defining a function of `ae` that finds its elements in the component's
// HTML (_HTML in attention_component.py), shows them only when the payload's `views` name it, wires
// its own mouse handlers and returns { on } when it is not shown, else
//   { on: true, canvas, draw, pickers?, toggles?, picksQuery?, onKey?, shown? }
// canvas: what PNG export takes; draw(): redraw from ae.v (update calls it; its own handlers too);
// pickers, toggles: elements for the bar (pickers choose what is shown, toggles how); picksQuery:
// Shift + arrows move ae.v.query; onKey(e): its own keys, true when it took one; shown(): the exact
// numbers it draws (the root's `shown`; else the map at the layer and head). A new kind (as the image
// overlay, image_view.js) adds: its file, before main.js in JS_PARTS; its name to VIEWS and its elements
// to _HTML in attention_component.py (anything else it needs in the payload's header); its function to
// VIEW_KINDS below. Views are drawn, and exported, in VIEW_KINDS order.

const VIEW_KINDS = [modelView, mapView, headView, imageView];

function update(ae, views) {
  const { root, v, L, H, R } = ae;
  v.layer = Math.max(0, Math.min(L - 1, v.layer)); v.head = Math.max(0, Math.min(H - 1, v.head));
  if (v.query != null) v.query = Math.max(0, Math.min(R - 1, v.query));
  syncPickers(ae);
  for (const view of views) if (view.on) view.draw();
  writeUrl(ae);
  root.dataset.layer = v.layer; root.dataset.head = v.head; root.dataset.query = v.query ?? "";
  const own = views.find((view) => view.on && view.shown);
  root.shown = own ? own.shown() : ae.mapOf(v.layer, v.head);  // the exact numbers drawn (null: a preview)
  ae.stamp();
}

export default function (component) {
  const root = component.parentElement.querySelector(".ae");
  root.dataset.received = String(performance.now());  // for the benchmark: data in → drawn
  let d;
  try {
    d = decode(component.data);
  } catch (err) {
    root.textContent = "The attention view could not read its data: " + err.message;
    return;
  }
  const ae = context(component, root, d);
  const views = VIEW_KINDS.map((kind) => kind(ae));
  ae.update = () => update(ae, views);
  controlBar(ae, views);
  root.onkeydown = onKeyDown(ae, views);
  ae.update();
}
