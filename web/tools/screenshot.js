// Screenshots of the viewer on a .gsi file in headless Chromium:
//   node tools/screenshot.js FILE.gsi OUT.png [--zoom Z] [--ellipses K]
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { chromium } from "playwright-core";

import { CHROMIUM, CHROMIUM_ARGS, serve } from "../test/server.js";

const [file, out, ...rest] = process.argv.slice(2);
const option = (name, fallback) => (rest.includes(name) ? Number(rest[rest.indexOf(name) + 1]) : fallback);
const zoom = option("--zoom", 1), ellipses = option("--ellipses", 0);
const name = basename(file);
const server = await serve({ [`/files/${name}`]: readFileSync(file) });
const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
const page = await browser.newPage({ viewport: { width: 1200, height: 720 } });
await page.goto(`${server.url}/web/index.html?file=/files/${encodeURIComponent(name)}`);
await page.evaluate(async ({ zoom, ellipses }) => {
  const v = window.gsiViewer;
  await v.ready;
  const canvas = document.getElementById("gl");
  const cx = canvas.clientWidth / 2, cy = canvas.clientHeight / 2;
  v.state.tx = cx - (cx - v.state.tx) * zoom;
  v.state.ty = cy - (cy - v.state.ty) * zoom;
  v.state.scale *= zoom;
  v.state.ellipses = ellipses;
  document.getElementById("ellipses").value = String(ellipses);
  v.drawNow();
}, { zoom, ellipses });
await page.screenshot({ path: out });
await browser.close();
server.close();
console.log(`wrote ${out}`);
