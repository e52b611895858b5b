// Drawing helpers every view kind shares: the colour scale, numbers and token labels as they are
// shown, the page's theme, canvases sized for the screen. No state: functions of their arguments.

const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
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

function label(t) { return t.trim() ? t : "␣"; }

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

// A rows × cols picture on the colour scale: cell i (row-major) coloured by shareAt(i), 0–1.
function scaleImage(rows, cols, shareAt) {
  const img = new ImageData(cols, rows);
  for (let i = 0; i < rows * cols; i++) {
    const k = Math.round(shareAt(i) * 255) * 3;
    img.data[i * 4] = LUT[k]; img.data[i * 4 + 1] = LUT[k + 1]; img.data[i * 4 + 2] = LUT[k + 2];
    img.data[i * 4 + 3] = 255;
  }
  return img;
}

// An off-screen canvas holding `img` at one pixel a cell, to be drawn scaled (no smoothing).
function offscreen(img) {
  const off = document.createElement("canvas");
  off.width = img.width; off.height = img.height;
  off.getContext("2d").putImageData(img, 0, 0);
  return off;
}
