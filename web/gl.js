// A WebGL2 renderer of the plain Gaussian sum (spec §8): one instanced quad per Gaussian over its
// 3-sigma box, the same float32 formula per fragment, additive blending into a float32 target, then
// the 8-bit rounding of §8. It evaluates at screen pixels, so zooming re-renders at full resolution.

/** @typedef {import("./gsi.js").Gaussians} Gaussians */

const SPLAT_VS = `#version 300 es
layout(location = 0) in vec2 corner;
layout(location = 1) in vec2 mean;
layout(location = 2) in vec3 chol;
layout(location = 3) in vec3 color;
uniform vec4 view;   // sx, sy, tx, ty: image pixels to target pixels
uniform vec2 size;   // target width, height
flat out vec2 vMean;
flat out vec3 vChol;
flat out vec3 vColor;
void main() {
  vec2 m = mean * view.xy + view.zw;
  vec3 L = chol * view.xyy;
  vec2 half_ = vec2(3.0 * abs(L.x), 3.0 * length(L.yz)) + 1.0;
  vec2 p = m + corner * half_;
  gl_Position = vec4(p.x / size.x * 2.0 - 1.0, 1.0 - p.y / size.y * 2.0, 0.0, 1.0);
  vMean = m;
  vChol = L;
  vColor = color;
}`;

const SPLAT_FS = `#version 300 es
precision highp float;
flat in vec2 vMean;
flat in vec3 vChol;
flat in vec3 vColor;
uniform vec2 size;
out vec4 outColor;
void main() {
  vec2 p = vec2(gl_FragCoord.x, size.y - gl_FragCoord.y);  // the pixel centre, y down
  float z1 = (p.x - vMean.x) / vChol.x;
  float z2 = ((p.y - vMean.y) - vChol.y * z1) / vChol.z;
  float d2 = z1 * z1 + z2 * z2;
  if (!(d2 <= 9.0)) discard;
  outColor = vec4(vColor * exp(-0.5 * d2), 0.0);
}`;

const RESOLVE_VS = `#version 300 es
void main() {
  vec2 p = vec2(float((gl_VertexID & 1) * 4 - 1), float((gl_VertexID & 2) * 2 - 1));
  gl_Position = vec4(p, 0.0, 1.0);
}`;

const RESOLVE_FS = `#version 300 es
precision highp float;
uniform sampler2D sums;
uniform vec4 rect;     // the image in target pixels: x0, y0, x1, y1 (y down)
uniform vec3 outside;  // the colour around it
uniform float height;
out vec4 outColor;
void main() {
  vec2 p = vec2(gl_FragCoord.x, height - gl_FragCoord.y);
  if (p.x < rect.x || p.y < rect.y || p.x > rect.z || p.y > rect.w) {
    outColor = vec4(outside, 1.0);
    return;
  }
  vec3 v = texelFetch(sums, ivec2(gl_FragCoord.xy), 0).rgb;
  outColor = vec4(floor(clamp(v, 0.0, 1.0) * 255.0 + 0.5) / 255.0, 1.0);
}`;

/** @param {WebGL2RenderingContext} gl @param {string} vs @param {string} fs */
function program(gl, vs, fs) {
  const p = gl.createProgram();
  for (const [type, src] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
    const s = gl.createShader(type);
    gl.shaderSource(s, src);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(`shader: ${gl.getShaderInfoLog(s)}`);
    gl.attachShader(p, s);
  }
  gl.linkProgram(p);
  if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(`program: ${gl.getProgramInfoLog(p)}`);
  return p;
}

export class GLRenderer {
  /** @param {HTMLCanvasElement | OffscreenCanvas} canvas */
  constructor(canvas) {
    const gl = canvas.getContext("webgl2", { antialias: false, alpha: false, depth: false, premultipliedAlpha: false,
                                             preserveDrawingBuffer: true });
    if (!gl) throw new Error("WebGL2 is not available");
    this.canvas = canvas;
    this.gl = gl;
    const float = gl.getExtension("EXT_color_buffer_float");
    const blend = gl.getExtension("EXT_float_blend");
    /** "float32" when float32 targets can be blended, else "float16" (sums lose precision above 1). */
    this.precision = float && blend ? "float32" : "float16";
    if (!float && !gl.getExtension("EXT_color_buffer_half_float")) throw new Error("no float render targets");
    this.maxSize = Math.min(gl.getParameter(gl.MAX_TEXTURE_SIZE), ...gl.getParameter(gl.MAX_VIEWPORT_DIMS));
    this.splat = program(gl, SPLAT_VS, SPLAT_FS);
    this.resolve = program(gl, RESOLVE_VS, RESOLVE_FS);
    this.vao = gl.createVertexArray();
    gl.bindVertexArray(this.vao);
    const quad = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, quad);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
    gl.enableVertexAttribArray(0);
    gl.vertexAttribPointer(0, 2, gl.FLOAT, false, 0, 0);
    this.instances = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, this.instances);
    for (const [loc, n, at] of [[1, 2, 0], [2, 3, 2], [3, 3, 5]]) {
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, n, gl.FLOAT, false, 32, at * 4);
      gl.vertexAttribDivisor(loc, 1);
    }
    gl.bindVertexArray(null);
    this.count = 0;
    this.target = null;
  }

  /** Upload the Gaussians to draw. @param {Gaussians} g */
  setGaussians(g) {
    const data = new Float32Array(8 * g.count);
    for (let i = 0; i < g.count; i++) {
      data.set(g.means.subarray(2 * i, 2 * i + 2), 8 * i);
      data.set(g.chol.subarray(3 * i, 3 * i + 3), 8 * i + 2);
      data.set(g.colors.subarray(3 * i, 3 * i + 3), 8 * i + 5);
    }
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.instances);
    gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
    this.count = g.count;
  }

  /** The float accumulation target, at least `width` x `height`. */
  _target(width, height) {
    const gl = this.gl;
    if (this.target && this.target.width === width && this.target.height === height) return this.target;
    if (this.target) {
      gl.deleteTexture(this.target.texture);
      gl.deleteFramebuffer(this.target.fbo);
    }
    const texture = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, texture);
    gl.texStorage2D(gl.TEXTURE_2D, 1, this.precision === "float32" ? gl.RGBA32F : gl.RGBA16F, width, height);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    const fbo = gl.createFramebuffer();
    gl.bindFramebuffer(gl.FRAMEBUFFER, fbo);
    gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, texture, 0);
    this.target = { width, height, texture, fbo };
    return this.target;
  }

  /**
   * Render into the canvas, resized to `width` x `height` target pixels. An image point `(x, y)`
   * lands at `(x * sx + tx, y * sy + ty)`; with `tx = ty = 0` and `sx = W' / width`, this is spec §8's
   * render at another size.
   * Target pixels whose centres lie outside `rect` (x0, y0, x1, y1; default everywhere inside) get `outside`.
   * @param {{width: number, height: number, sx: number, sy: number, tx?: number, ty?: number,
   *          rect?: number[], outside?: number[]}} view
   */
  render({ width, height, sx, sy, tx = 0, ty = 0, rect = [-Infinity, -Infinity, Infinity, Infinity],
           outside = [0.2, 0.2, 0.2] }) {
    const gl = this.gl;
    if (this.canvas.width !== width) this.canvas.width = width;
    if (this.canvas.height !== height) this.canvas.height = height;
    const target = this._target(width, height);
    gl.bindFramebuffer(gl.FRAMEBUFFER, target.fbo);
    gl.viewport(0, 0, width, height);
    gl.clearColor(0, 0, 0, 0);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.ONE, gl.ONE);
    gl.useProgram(this.splat);
    gl.uniform4f(gl.getUniformLocation(this.splat, "view"), Math.fround(sx), Math.fround(sy), tx, ty);
    gl.uniform2f(gl.getUniformLocation(this.splat, "size"), width, height);
    gl.bindVertexArray(this.vao);
    gl.drawArraysInstanced(gl.TRIANGLE_STRIP, 0, 4, this.count);
    gl.bindVertexArray(null);
    gl.disable(gl.BLEND);
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.useProgram(this.resolve);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, target.texture);
    gl.uniform1i(gl.getUniformLocation(this.resolve, "sums"), 0);
    gl.uniform4f(gl.getUniformLocation(this.resolve, "rect"), ...rect.map((v) => Math.max(-1e30, Math.min(1e30, v))));
    gl.uniform3fv(gl.getUniformLocation(this.resolve, "outside"), outside);
    gl.uniform1f(gl.getUniformLocation(this.resolve, "height"), height);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
  }

  /** The canvas as RGBA8, rows from the top. @returns {Uint8Array} */
  readPixels() {
    const gl = this.gl, w = this.canvas.width, h = this.canvas.height;
    const flipped = new Uint8Array(w * h * 4);
    gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, flipped);
    const out = new Uint8Array(w * h * 4);
    for (let y = 0; y < h; y++) out.set(flipped.subarray((h - 1 - y) * w * 4, (h - y) * w * 4), y * w * 4);
    return out;
  }

  /**
   * The decoded image at `width` x `height` (spec §8), as RGBA8 rows from the top, drawn in tiles
   * where it is larger than the GPU's largest target.
   * @param {Gaussians} g @param {number} [width] @param {number} [height]
   */
  decodeToPixels(g, width = g.width, height = g.height) {
    this.setGaussians(g);
    const sx = Math.fround(width / g.width), sy = Math.fround(height / g.height);
    const tile = Math.min(this.maxSize, 4096);
    const out = new Uint8Array(width * height * 4);
    for (let y0 = 0; y0 < height; y0 += tile) {
      for (let x0 = 0; x0 < width; x0 += tile) {
        const w = Math.min(tile, width - x0), h = Math.min(tile, height - y0);
        this.render({ width: w, height: h, sx, sy, tx: -x0, ty: -y0 });
        const px = this.readPixels();
        for (let y = 0; y < h; y++) out.set(px.subarray(y * w * 4, (y + 1) * w * 4), ((y0 + y) * width + x0) * 4);
      }
    }
    return out;
  }
}
