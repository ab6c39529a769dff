// Decode and render times of a .gsi file in headless Chromium: node tools/bench.js FILE.gsi [ROUNDS]
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

import { CHROMIUM, CHROMIUM_ARGS, serve } from "../test/server.js";

const [file, rounds = "30"] = process.argv.slice(2);
const server = await serve({ "/bench.gsi": readFileSync(file) });
const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
const page = await browser.newPage();
await page.goto(`${server.url}/web/index.html`);
const result = await page.evaluate(async (rounds) => {
  const { gsi, renderRGBA, GLRenderer } = window.gsiViewer;
  const bytes = new Uint8Array(await (await fetch("/bench.gsi")).arrayBuffer());
  const g = gsi.decode(bytes).gaussians;
  const gl = new GLRenderer(document.createElement("canvas"));
  gl.setGaussians(g);
  const glRender = () => {
    gl.render({ width: g.width, height: g.height, sx: 1, sy: 1 });
    gl.gl.readPixels(0, 0, 1, 1, gl.gl.RGBA, gl.gl.UNSIGNED_BYTE, new Uint8Array(4));  // waits for the GPU
  };
  const cases = {
    "decode (parse, zstd, dequantize)": () => gsi.decode(bytes),
    "CPU render to RGBA8 (normative)": () => renderRGBA(g),
    "decode + CPU render": () => renderRGBA(gsi.decode(bytes).gaussians),
    "WebGL2 render (SwiftShader here)": glRender,
  };
  const times = {};
  for (const [name, fn] of Object.entries(cases)) {
    fn();
    fn();
    times[name] = [];
  }
  for (let r = 0; r < rounds; r++) {
    for (const [name, fn] of Object.entries(cases)) {
      const t0 = performance.now();
      fn();
      times[name].push(performance.now() - t0);
    }
  }
  const median = (a) => a.sort((x, y) => x - y)[a.length >> 1];
  return { size: `${g.width}x${g.height}`, count: g.count, bytes: bytes.length, precision: gl.precision,
           medians: Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)])),
           ua: navigator.userAgent };
}, Number(rounds));
console.log(JSON.stringify(result, null, 1));
await browser.close();
server.close();
