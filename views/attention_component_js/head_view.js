// The head view ("lines"): lines from queries (left) to keys (right), one colour per head, opacity
// the weight; chips toggle heads, a query picked (hover, click, the picker, Shift + arrows) alone.

const HEAD_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"];

function headView(ae) {
  const { $, d, v, th, H, R, C, mapOf, request, say, stamp } = ae;
  const lines = $(".lines");
  const on = d.views.includes("lines");
  lines.style.display = on ? "" : "none";
  if (!on) return { on };
  const chips = $(".chips");
  const ROW = 16, LX = 170, GAP = 200;  // a token's row height; the queries' right edge; the gap

  function draw() {
    chips.replaceChildren(...[...Array(H).keys()].map((h) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "chip" + (v.heads.has(h) ? " on" : "");
      b.style.setProperty("--c", HEAD_COLOURS[h % HEAD_COLOURS.length]);
      b.textContent = d.head_names[h];
      b.title = "Toggle this head (double-click: this head alone)";
      b.onclick = () => { v.heads.has(h) ? v.heads.delete(h) : v.heads.add(h); draw(); };
      b.ondblclick = () => { v.heads = new Set([h]); draw(); };
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
  }

  const queryAt = (e) => {  // the query whose label is under the mouse, or null
    const r = lines.getBoundingClientRect(), x = e.clientX - r.left;
    const q = Math.floor((e.clientY - r.top - 5) / ROW);
    return x < LX && q >= 0 && q < R ? q : null;
  };
  lines.onmousemove = (e) => {
    const q = queryAt(e);
    if (q === (v.lineHover ?? null)) return;
    v.lineHover = q;
    draw();
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
  lines.onmouseleave = () => { v.lineHover = null; draw(); };
  lines.onclick = (e) => {
    const q = queryAt(e);
    v.query = q === v.query ? null : q;
    ae.update();
  };

  const wrap = document.createElement("label");  // the query picker: all queries' lines, or one's
  wrap.textContent = "Lines from ";
  const s = document.createElement("select");
  s.setAttribute("aria-label", "Lines from query");
  s.className = "pick-query";
  s.add(new Option("all queries", ""));
  d.queries.forEach((q, i) => s.add(new Option(`${i}: ${label(q)}`, String(i))));
  s.value = v.query == null ? "" : String(v.query);
  s.onchange = () => { v.query = s.value === "" ? null : Number(s.value); ae.update(); };
  wrap.append(s);
  return { on, canvas: lines, draw, pickers: [wrap], picksQuery: true };
}
