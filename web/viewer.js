// The viewer page: open or drop `.gsi` files, pan and zoom (re-rendered at screen resolution), header
// and metadata, and an overlay of the Gaussians' ellipses.

import * as gsi from "./gsi.js";
import { GLRenderer } from "./gl.js";
import { renderRGBA, scaled, checkRenderBudget } from "./render.js";

const $ = (id) => document.getElementById(id);
const stage = $("stage"), glCanvas = $("gl"), overlay = $("overlay");

/** Everything the page shows; `window.gsiViewer` exposes it to tests. */
const state = {
  file: null, name: "", size: 0, error: null,
  scale: 1, tx: 0, ty: 0,          // image pixel (x, y) -> device pixel (x * scale + tx, y * scale + ty)
  ellipses: 0, renderer: "gl",
  timings: { decode: 0, render: 0 },
};
let renderer = null;
try {
  renderer = new GLRenderer(glCanvas);
} catch (e) {
  state.renderer = "cpu";
  $("renderer").value = "cpu";
  $("renderer").disabled = true;
  status(`WebGL2 unavailable (${e.message}): using the CPU renderer`);
}

function status(text) {
  $("status").textContent = text;
}

/** Canvas size in device pixels. */
function deviceSize() {
  const r = stage.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
  return [Math.max(1, Math.round(r.width * dpr)), Math.max(1, Math.round(r.height * dpr))];
}

function fit() {
  if (!state.file) return;
  const [w, h] = deviceSize(), g = state.file.gaussians;
  state.scale = Math.min(w / g.width, h / g.height) * 0.95;
  state.tx = (w - g.width * state.scale) / 2;
  state.ty = (h - g.height * state.scale) / 2;
  draw();
}

function actualSize() {
  if (!state.file) return;
  const [w, h] = deviceSize(), g = state.file.gaussians;
  state.scale = 1;
  state.tx = Math.round((w - g.width) / 2);
  state.ty = Math.round((h - g.height) / 2);
  draw();
}

let pending = false;
function draw() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    drawNow();
  });
}

/** Render the current view at the canvas's device resolution. */
function drawNow() {
  const [w, h] = deviceSize();
  for (const c of [overlay]) {
    if (c.width !== w) c.width = w;
    if (c.height !== h) c.height = h;
  }
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  if (!state.file) return;
  const g = state.file.gaussians, s = state.scale;
  const rect = [state.tx, state.ty, state.tx + g.width * s, state.ty + g.height * s];
  const t0 = performance.now();
  if (state.renderer === "gl" && renderer) {
    glCanvas.style.visibility = "visible";
    renderer.render({ width: w, height: h, sx: s, sy: s, tx: state.tx, ty: state.ty, rect });
    renderer.gl.finish();
  } else {
    glCanvas.style.visibility = "hidden";
    drawCpu(ctx, g, rect, w, h);
  }
  state.timings.render = performance.now() - t0;
  if (state.ellipses) drawEllipses(ctx, g, state.ellipses);
  $("zoom").textContent = `zoom ${(s * 100).toFixed(s < 1 ? 1 : 0)}%`;
  status(`${state.name}: decoded in ${state.timings.decode.toFixed(1)} ms, rendered ${w}x${h} in ` +
         `${state.timings.render.toFixed(1)} ms (${state.renderer === "gl" && renderer ? `WebGL2, ${renderer.precision} sums` : "CPU"})`);
}

/** The normative CPU render of the visible part of the image, drawn into the overlay's 2D context. */
function drawCpu(ctx, g, rect, w, h) {
  ctx.fillStyle = "#333";
  ctx.fillRect(0, 0, w, h);
  const x0 = Math.max(0, Math.floor(rect[0])), y0 = Math.max(0, Math.floor(rect[1]));
  const x1 = Math.min(w, Math.ceil(rect[2])), y1 = Math.min(h, Math.ceil(rect[3]));
  if (x1 <= x0 || y1 <= y0) return;
  // the visible window as its own image: Gaussians moved by the view, then rendered at 1:1
  const n = g.count, s = state.scale;
  const view = { width: x1 - x0, height: y1 - y0, count: n, means: new Float32Array(2 * n),
                 chol: new Float32Array(3 * n), colors: g.colors };
  for (let i = 0; i < n; i++) {
    view.means[2 * i] = g.means[2 * i] * s + state.tx - x0;
    view.means[2 * i + 1] = g.means[2 * i + 1] * s + state.ty - y0;
    view.chol[3 * i] = g.chol[3 * i] * s;
    view.chol[3 * i + 1] = g.chol[3 * i + 1] * s;
    view.chol[3 * i + 2] = g.chol[3 * i + 2] * s;
  }
  checkRenderBudget(view, view.width, view.height);
  ctx.putImageData(new ImageData(renderRGBA(view), view.width, view.height), x0, y0);
}

/** Each Gaussian's k-sigma ellipse (the contour `d2 = k^2`), over the render. */
function drawEllipses(ctx, g, k) {
  const s = state.scale;
  ctx.lineWidth = Math.max(1, (window.devicePixelRatio || 1) * 0.75);
  ctx.strokeStyle = "rgba(255, 255, 255, 0.55)";
  ctx.beginPath();
  const [w, h] = [overlay.width, overlay.height];
  for (let i = 0; i < g.count; i++) {
    const l11 = g.chol[3 * i], l21 = g.chol[3 * i + 1], l22 = g.chol[3 * i + 2];
    // covariance L L^T = [[a, b], [b, c]]; its eigenvalues are the squared semi-axes
    const a = l11 * l11, b = l11 * l21, c = l21 * l21 + l22 * l22;
    const mid = (a + c) / 2, rad = Math.hypot((a - c) / 2, b);
    const r1 = k * Math.sqrt(mid + rad) * s, r2 = k * Math.sqrt(Math.max(mid - rad, 0)) * s;
    const cx = g.means[2 * i] * s + state.tx, cy = g.means[2 * i + 1] * s + state.ty;
    if (cx + r1 < 0 || cy + r1 < 0 || cx - r1 > w || cy - r1 > h || r1 < 0.5) continue;
    const angle = 0.5 * Math.atan2(2 * b, a - c);
    ctx.moveTo(cx + r1 * Math.cos(angle), cy + r1 * Math.sin(angle));
    ctx.ellipse(cx, cy, r1, r2, angle, 0, 2 * Math.PI);
  }
  ctx.stroke();
}

function row(table, key, value) {
  const tr = table.insertRow();
  tr.insertCell().textContent = key;
  tr.insertCell().textContent = value;
}

function showInfo() {
  const info = $("info");
  info.replaceChildren();
  if (state.error) {
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = `${state.name}: ${state.error.name}: ${state.error.message}`;
    info.append(p);
    return;
  }
  const f = state.file, h = f.header;
  const section = (title) => {
    const h3 = document.createElement("h3");
    h3.textContent = title;
    const table = document.createElement("table");
    info.append(h3, table);
    return table;
  };
  const t = section(state.name);
  row(t, "size", `${h.width} x ${h.height} px`);
  row(t, "Gaussians", h.count.toLocaleString());
  row(t, "mode", gsi.MODES[h.mode]);
  row(t, "file", `${state.size.toLocaleString()} bytes`);
  row(t, "bytes/Gaussian", h.count ? (state.size / h.count).toFixed(2) : "-");
  row(t, "bits/pixel", ((state.size * 8) / (h.width * h.height)).toFixed(3));
  row(t, "ratio to RGB8", `${((h.width * h.height * 3) / state.size).toFixed(1)}x`);
  const hd = section("Header");
  for (const [k, v] of Object.entries(h)) row(hd, k, String(v));
  if (h.version === 1) row(hd, "zstd frames", String(f.frames));
  if (f.quantization) {
    const q = f.quantization, qt = section("Quantization");
    row(qt, "position bits", `${q.positionBits} (1/${2 ** q.positionBits} px)`);
    row(qt, "colour transform", q.colorTransform ? "YCoCg" : "RGB");
    gsi.FIELD_NAMES.forEach((name, i) => row(qt, name, `offset ${+q.offsets[i].toPrecision(7)}, step ${+q.steps[i].toPrecision(7)}`));
    if (q.configs) row(qt, "token configs", q.configs.map((c) => `(${c & 15},${c >> 4})`).join(" "));
    else row(qt, "delta shift", String(q.deltaShift));
  }
  const mt = section(`Metadata (${f.metadata.size})`);
  for (const [k, v] of f.metadata) row(mt, k, v);
}

/** Decode `bytes` and show them. @param {Uint8Array} bytes @param {string} name */
function loadBytes(bytes, name) {
  state.name = name;
  state.size = bytes.length;
  const t0 = performance.now();
  try {
    state.file = gsi.decode(bytes);
    state.error = null;
  } catch (e) {
    state.file = null;
    state.error = e;
  }
  state.timings.decode = performance.now() - t0;
  $("drop").classList.toggle("hidden", !!state.file);
  showInfo();
  if (state.file) {
    if (renderer) renderer.setGaussians(state.file.gaussians);
    fit();
  } else {
    draw();
    status(`${name}: ${state.error.name}: ${state.error.message}`);
  }
  return state.error ? state.error.name : "ok";
}

async function loadUrl(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return loadBytes(new Uint8Array(await response.arrayBuffer()), decodeURIComponent(url.split("/").pop()));
}

async function loadFile(file) {
  return loadBytes(new Uint8Array(await file.arrayBuffer()), file.name);
}

// ---- interaction ----

$("open").addEventListener("change", (e) => e.target.files.length && loadFile(e.target.files[0]));
$("fit").addEventListener("click", fit);
$("actual").addEventListener("click", actualSize);
$("ellipses").addEventListener("change", (e) => { state.ellipses = Number(e.target.value); draw(); });
$("renderer").addEventListener("change", (e) => { state.renderer = e.target.value; draw(); });
$("files").addEventListener("change", (e) => loadUrl(e.target.value));
window.addEventListener("resize", draw);
window.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
  if (e.key === "f") fit();
  if (e.key === "1") actualSize();
  if (e.key === "e") { state.ellipses = state.ellipses ? 0 : 1; $("ellipses").value = String(state.ellipses); draw(); }
});

stage.addEventListener("wheel", (e) => {
  e.preventDefault();
  const dpr = window.devicePixelRatio || 1, r = stage.getBoundingClientRect();
  const px = (e.clientX - r.left) * dpr, py = (e.clientY - r.top) * dpr;
  const factor = Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015));
  const scale = Math.min(Math.max(state.scale * factor, 1e-3), 1e4);
  // keep the image point under the cursor where it is
  state.tx = px - ((px - state.tx) * scale) / state.scale;
  state.ty = py - ((py - state.ty) * scale) / state.scale;
  state.scale = scale;
  draw();
}, { passive: false });

let drag = null;
stage.addEventListener("pointerdown", (e) => {
  drag = { x: e.clientX, y: e.clientY, tx: state.tx, ty: state.ty };
  stage.setPointerCapture(e.pointerId);
  stage.classList.add("dragging");
});
stage.addEventListener("pointermove", (e) => {
  if (!drag) return;
  const dpr = window.devicePixelRatio || 1;
  state.tx = drag.tx + (e.clientX - drag.x) * dpr;
  state.ty = drag.ty + (e.clientY - drag.y) * dpr;
  draw();
});
stage.addEventListener("pointerup", () => { drag = null; stage.classList.remove("dragging"); });

for (const type of ["dragenter", "dragover"]) {
  window.addEventListener(type, (e) => { e.preventDefault(); stage.classList.add("over"); });
}
window.addEventListener("dragleave", () => stage.classList.remove("over"));
window.addEventListener("drop", (e) => {
  e.preventDefault();
  stage.classList.remove("over");
  if (e.dataTransfer.files.length) loadFile(e.dataTransfer.files[0]);
});

/** Files named in `?file=URL` (repeatable), else those `gsi serve` lists in files.json. */
async function initialFiles() {
  const params = new URLSearchParams(location.search);
  let urls = params.getAll("file");
  if (!urls.length) {
    try {
      const r = await fetch("files.json");
      if (r.ok) urls = (await r.json()).map((f) => f.url);
    } catch {
      // opened without `gsi serve`: no list
    }
  }
  if (urls.length > 1) {
    const select = $("files");
    for (const url of urls) select.add(new Option(decodeURIComponent(url.split("/").pop()), url));
    select.hidden = false;
  }
  if (urls.length) await loadUrl(urls[0]);
}

window.gsiViewer = { state, loadBytes, loadUrl, fit, actualSize, drawNow, renderer, gsi, renderRGBA, scaled,
                     GLRenderer, ready: initialFiles() };
