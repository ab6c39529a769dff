// The JS decoder against every vector of spec/vectors, under Node's own test runner (`node --test`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import * as gsi from "../gsi.js";
import { renderRGBA, scaled, checkRenderBudget, RenderBudgetError } from "../render.js";
import { readPng } from "./png.js";

const VECTORS = fileURLToPath(new URL("../../spec/vectors/", import.meta.url));
const CASES = JSON.parse(readFileSync(VECTORS + "vectors.json", "utf8"));
const INVALID = JSON.parse(readFileSync(VECTORS + "invalid/expected.json", "utf8"));

/** float32 bit pattern of a `float.hex` string. */
function bits(hex) {
  const f = new Float32Array([Number.NaN]);
  f[0] = parseHexFloat(hex);
  return new Uint32Array(f.buffer)[0];
}

/** Python's float.hex format to a number (exact). */
function parseHexFloat(s) {
  const m = /^(-?)0x([01])\.([0-9a-f]+)p([+-]\d+)$/.exec(s);
  assert.ok(m, `bad hex float ${s}`);
  const mant = parseInt(m[2], 16) + parseInt(m[3], 16) / 16 ** m[3].length;
  const v = mant * 2 ** Number(m[4]);
  return m[1] ? -v : v;
}

/** Largest channel difference between an RGBA render and RGB pixels. */
function maxDiff(rgba, rgb) {
  let worst = 0;
  for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) {
    for (let c = 0; c < 3; c++) worst = Math.max(worst, Math.abs(rgba[i + c] - rgb[j + c]));
  }
  return worst;
}

for (const c of CASES) {
  test(`decodes ${c.file}`, () => {
    const data = readFileSync(VECTORS + c.file);
    assert.equal(data.length, c.file_size);
    const f = gsi.decode(data);
    assert.deepEqual(f.header, {
      version: c.header.version, mode: c.header.mode, width: c.header.width, height: c.header.height,
      count: c.header.count, metadataLength: c.header.metadata_length, payloadLength: c.header.payload_length,
    });
    assert.deepEqual([...f.metadata], Object.entries(c.metadata));
    const g = f.gaussians;
    const u32 = (a) => new Uint32Array(a.buffer, a.byteOffset, a.length);
    const quantized = c.header.mode === 2;
    for (const [name, width] of [["means", 2], ["chol", 3], ["colors", 3]]) {
      const got = u32(g[name]);
      const want = c[name].flat().map(bits);
      assert.equal(got.length, want.length, name);
      for (let i = 0; i < want.length; i++) {
        // spec 7.4: in mode 2, l11, l21, l22 may be one float32 unit in the last place off (2^v)
        const ulp = quantized && name === "chol" ? 1 : 0;
        assert.ok(Math.abs(got[i] - want[i]) <= ulp, `${name}[${Math.floor(i / width)}][${i % width}]: ${got[i]} != ${want[i]}`);
      }
    }
    const png = readPng(readFileSync(VECTORS + c.decoded_png));
    assert.equal(createHash("sha256").update(png.rgb).digest("hex"), c.decoded_sha256);
    assert.ok(maxDiff(renderRGBA(g), png.rgb) <= 1, "stored size within 1");
    for (const r of c.renders) {
      const img = readPng(readFileSync(VECTORS + r.png));
      assert.equal(createHash("sha256").update(img.rgb).digest("hex"), r.sha256);
      assert.ok(maxDiff(renderRGBA(g, r.width, r.height), img.rgb) <= 1, `${r.width}x${r.height} within 1`);
    }
  });
}

for (const c of INVALID) {
  test(`rejects ${c.file} with ${c.error} (${c.check})`, () => {
    const data = readFileSync(VECTORS + "invalid/" + c.file);
    assert.throws(() => gsi.decode(data), (e) => {
      assert.ok(e instanceof gsi.GsiError, `not a GsiError: ${e}`);
      assert.equal(e.constructor.name, c.error, e.message);
      return true;
    });
  });
}

test("every error class of the spec exists and is a GsiError", () => {
  const spec = readFileSync(VECTORS + "../gsi.md", "utf8");
  const names = new Set([...spec.matchAll(/^\| `([A-Za-z]+Error)` \|/gm)].map((m) => m[1]));
  assert.ok(names.size >= 10);
  for (const name of names) assert.ok(gsi[name].prototype instanceof gsi.GsiError, name);
});

test("the header is checked from its first 20 bytes alone", () => {
  const data = readFileSync(VECTORS + "small-quantized.gsi");
  assert.equal(gsi.parseHeader(data.subarray(0, 20)).count, 64);
  assert.throws(() => gsi.parseHeader(data.subarray(0, 19)), gsi.TruncatedError);
});

test("scaling follows spec 8: float32 factors", () => {
  const g = gsi.decode(readFileSync(VECTORS + "single-float32.gsi")).gaussians;
  const s = scaled(g, 40, 30);
  assert.equal(s.means[0], Math.fround(7.25 * Math.fround(40 / 16)));
  assert.equal(s.chol[1], Math.fround(1.5 * Math.fround(30 / 12)));
});

test("the render budget refuses a decompression bomb and only that", () => {
  const n = gsi.MAX_GAUSSIANS;  // every box covers the 8x8 image: 81 footprint pixels each, 3.4e8 in all
  const bomb = { width: 8, height: 8, count: n, means: new Float32Array(2 * n).fill(4),
                 chol: new Float32Array(3 * n).fill(1000), colors: new Float32Array(3 * n) };
  assert.throws(() => checkRenderBudget(bomb, 8, 8), RenderBudgetError);
  const g = gsi.decode(readFileSync(VECTORS + "small-quantized.gsi")).gaussians;
  checkRenderBudget(g, 48, 32);
});
