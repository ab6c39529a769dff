// The normative decode to pixels (spec §8) on the CPU, at any size, in float32 arithmetic as written.

const f32 = Math.fround;

/** @typedef {import("./gsi.js").Gaussians} Gaussians */

/**
 * The same continuous image mapped onto a `width` x `height` grid (§8, "Other sizes").
 * @param {Gaussians} g @param {number} width @param {number} height
 * @returns {Gaussians}
 */
export function scaled(g, width, height) {
  if (width === g.width && height === g.height) return g;
  const sx = f32(width / g.width), sy = f32(height / g.height);
  const n = g.count;
  const means = new Float32Array(2 * n), chol = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    // a product of two float32 values is exact in float64, so the store rounds it once, as float32 does
    means[2 * i] = g.means[2 * i] * sx;
    means[2 * i + 1] = g.means[2 * i + 1] * sy;
    chol[3 * i] = g.chol[3 * i] * sx;
    chol[3 * i + 1] = g.chol[3 * i + 1] * sy;
    chol[3 * i + 2] = g.chol[3 * i + 2] * sy;
  }
  return { width, height, count: n, means, chol, colors: g.colors };
}

/**
 * Unclamped float sums per pixel and channel, `height * width * 3` values, rows from the top.
 * @param {Gaussians} g @param {number} [width] @param {number} [height]
 * @returns {Float64Array}
 */
export function renderFloat(g, width = g.width, height = g.height) {
  const s = scaled(g, width, height);
  const out = new Float64Array(width * height * 3);
  const { means, chol, colors } = s;
  for (let k = 0; k < s.count; k++) {
    const x = means[2 * k], y = means[2 * k + 1];
    const l11 = chol[3 * k], l21 = chol[3 * k + 1], l22 = chol[3 * k + 2];
    const r = colors[3 * k], gr = colors[3 * k + 1], b = colors[3 * k + 2];
    if (r === 0 && gr === 0 && b === 0) continue;
    // the box that holds d2 <= 9, widened a little so that rounding never cuts a pixel the test keeps
    const hx = 3 * l11 * (1 + 1e-5) + 1e-3, hy = 3 * Math.hypot(l21, l22) * (1 + 1e-5) + 1e-3;
    const j0 = Math.max(0, Math.ceil(x - hx - 0.5)), j1 = Math.min(width - 1, Math.floor(x + hx - 0.5));
    const i0 = Math.max(0, Math.ceil(y - hy - 0.5)), i1 = Math.min(height - 1, Math.floor(y + hy - 0.5));
    if (!(j0 <= j1 && i0 <= i1)) continue;
    // per row, d2 <= 9 is a quadratic in u = dx / l11: a u^2 + b u + c <= 0; its roots bound the span
    const shear = l21 / l22, a = 1 + shear * shear;
    for (let i = i0; i <= i1; i++) {
      const dy = f32(i + 0.5 - y);
      let lo = j0, hi = j1;
      const b2 = (dy * shear) / l22, c = (dy / l22) * (dy / l22) - 9, disc = b2 * b2 - a * c;
      if (Number.isFinite(disc) && Number.isFinite(a)) {
        if (disc < -1e-6 * (b2 * b2 + Math.abs(a * c))) continue;
        const root = Math.sqrt(Math.max(disc, 0)), margin = 1e-3 + 1e-5 * (Math.abs(x) + l11 * (Math.abs(b2) + root) / a);
        lo = Math.max(j0, Math.ceil(x + (l11 * (b2 - root)) / a - 0.5 - margin));
        hi = Math.min(j1, Math.floor(x + (l11 * (b2 + root)) / a - 0.5 + margin));
      }
      let at = (i * width + lo) * 3;
      for (let j = lo; j <= hi; j++, at += 3) {
        const z1 = f32(f32(j + 0.5 - x) / l11);
        const z2 = f32(f32(dy - f32(l21 * z1)) / l22);
        const d2 = f32(f32(z1 * z1) + f32(z2 * z2));
        if (d2 <= 9) {
          const w = Math.exp(-0.5 * d2);
          out[at] += r * w;
          out[at + 1] += gr * w;
          out[at + 2] += b * w;
        }
      }
    }
  }
  return out;
}

/** A sum to 8 bits: `floor(clamp(v, 0, 1) * 255 + 0.5)` in float32. @param {number} v */
export function toByte(v) {
  const c = v > 0 ? (v < 1 ? f32(v) : 1) : 0;
  return Math.floor(f32(f32(c * 255) + 0.5));
}

/**
 * The decoded image as RGBA8 (alpha 255), `height * width * 4` bytes, rows from the top.
 * @param {Gaussians} g @param {number} [width] @param {number} [height]
 * @returns {Uint8ClampedArray}
 */
export function renderRGBA(g, width = g.width, height = g.height) {
  const sums = renderFloat(g, width, height);
  const out = new Uint8ClampedArray(width * height * 4);
  for (let p = 0, q = 0; p < sums.length; p += 3, q += 4) {
    out[q] = toByte(sums[p]);
    out[q + 1] = toByte(sums[p + 1]);
    out[q + 2] = toByte(sums[p + 2]);
    out[q + 3] = 255;
  }
  return out;
}

/**
 * Footprint pixels of a render (spec §9): each Gaussian's box clipped to the image, plus one per side.
 * @param {Gaussians} g @param {number} [width] @param {number} [height]
 */
export function renderWork(g, width = g.width, height = g.height) {
  const s = scaled(g, width, height);
  let total = 0;
  for (let k = 0; k < s.count; k++) {
    const x = s.means[2 * k], y = s.means[2 * k + 1];
    const hx = 3 * Math.abs(s.chol[3 * k]), hy = 3 * Math.hypot(s.chol[3 * k + 1], s.chol[3 * k + 2]);
    if (x + hx >= 0 && x - hx <= width && y + hy >= 0 && y - hy <= height) {
      const wx = Math.min(Math.max(Math.min(x + hx, width) - Math.max(x - hx, 0), 0), width) + 1;
      const wy = Math.min(Math.max(Math.min(y + hy, height) - Math.max(y - hy, 0), 0), height) + 1;
      total += wx * wy;
    }
  }
  return total;
}

/** Refused renders (spec §9); not a format error. */
export class RenderBudgetError extends Error {
  constructor(message) {
    super(message);
    this.name = "RenderBudgetError";
  }
}

/**
 * Throw {@link RenderBudgetError} when a render would visit more than `maxOverlap` footprint
 * pixels per output pixel and more than 2^28 in all (the reference library's rule).
 * @param {Gaussians} g @param {number} width @param {number} height @param {number} [maxOverlap]
 */
export function checkRenderBudget(g, width, height, maxOverlap = 1024) {
  const work = renderWork(g, width, height);
  if (work > maxOverlap * width * height && work > 2 ** 28) {
    throw new RenderBudgetError(`rendering ${width}x${height} would visit ${work.toPrecision(3)} footprint pixels`);
  }
}
