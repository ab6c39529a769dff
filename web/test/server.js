// A static file server for the browser tests and benchmarks: the repository's web/, spec/ and tests/data/.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
                ".json": "application/json", ".png": "image/png", ".gsi": "application/octet-stream" };
const ALLOWED = ["web/", "spec/", "tests/data/"];

/** Serve on 127.0.0.1 at a free port; resolves to `{url, close}`. Extra files: `{"/path": Uint8Array}`. */
export function serve(extra = {}) {
  const server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^\/+/, "");
    try {
      if (extra["/" + path]) {
        res.writeHead(200, { "content-type": TYPES[extname(path)] || "application/octet-stream" });
        res.end(extra["/" + path]);
        return;
      }
      if (!ALLOWED.some((p) => path.startsWith(p))) throw new Error("not served");
      const body = await readFile(join(ROOT, path));
      res.writeHead(200, { "content-type": TYPES[extname(path)] || "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve({ url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() });
    });
  });
}

/** Chromium for playwright-core: $CHROMIUM, else the system browser (never a downloaded one). */
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
                              "--no-sandbox"];
