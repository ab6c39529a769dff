// A decoder of `.gsi` version 1 and 2 files, written from spec/gsi.md. No build step: an ES module for
// browsers and Node. Section numbers (§) and check ids (H1, S5, ...) refer to the spec.

import { Decompress } from "./vendor/fzstd.mjs";

/** Base class of every format error (spec §11). */
export class GsiError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}
export class NotGsiError extends GsiError {}
export class UnsupportedVersionError extends GsiError {}
export class TruncatedError extends GsiError {}
export class HeaderError extends GsiError {}
export class LimitError extends GsiError {}
export class TrailingDataError extends GsiError {}
export class ChecksumError extends GsiError {}
export class MetadataError extends GsiError {}
export class StreamError extends GsiError {}
export class ParameterError extends GsiError {}

/** Named limits (§10). */
export const MAX_DIMENSION = 16384;
export const MAX_GAUSSIANS = 1 << 22;
export const MAX_METADATA_BYTES = 65535;
export const MAX_METADATA_ENTRIES = 256;
export const MAX_FRAMES = 16;
export const MAX_WINDOW = 1 << 27;
export const MAX_POSITION_BITS = 4;
export const MODES = ["float32", "float16", "quantized"];
export const FIELD_NAMES = ["log2_l11", "log2_l22", "shear", "c0", "c1", "c2"];

const MAGIC = [0x89, 0x47, 0x53, 0x49];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
const HEADER_SIZE = 20;
const QUANT_TABLE_SIZE = 57;
const V2_TABLE_SIZE = 55;
export const VERSIONS = [1, 2];
const MAX_BLOCK = 128 * 1024;
const TWO_32 = 2 ** 32;
const TWO_40 = 2 ** 40;

/**
 * @typedef {object} Header
 * @property {number} version
 * @property {number} mode 0 float32, 1 float16, 2 quantized
 * @property {number} width
 * @property {number} height
 * @property {number} count
 * @property {number} metadataLength
 * @property {number} payloadLength
 *
 * @typedef {object} Gaussians
 * @property {number} width
 * @property {number} height
 * @property {number} count
 * @property {Float32Array} means (x, y) per Gaussian
 * @property {Float32Array} chol (l11, l21, l22) per Gaussian
 * @property {Float32Array} colors (r, g, b) per Gaussian, 1.0 = 255
 *
 * @typedef {object} Quantization
 * @property {number} positionBits
 * @property {number} colorTransform 0 RGB, 1 YCoCg
 * @property {number[]} offsets
 * @property {number[]} steps
 * @property {number[] | null} configs token config byte per stream (version 1)
 * @property {number | null} deltaShift the raw low bits of each pixel delta (version 2)
 *
 * @typedef {object} GsiFile
 * @property {Header} header
 * @property {Map<string, string>} metadata entries in file order
 * @property {Gaussians} gaussians
 * @property {number} frames the payload's zstd frame count (0 in version 2)
 * @property {Quantization | null} quantization the table of a mode-2 file
 */

let crcTable = null;

/** CRC-32 (ISO-HDLC, as zlib's crc32) of `data`. @param {Uint8Array} data */
export function crc32(data) {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** @param {ArrayBuffer | ArrayBufferView} data */
function bytesOf(data) {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return new Uint8Array(data);
}

/**
 * Parse and check the 20-byte header (checks H1-H10). Needs only the first 20 bytes.
 * @param {ArrayBuffer | ArrayBufferView} data
 * @returns {Header}
 */
export function parseHeader(data) {
  const b = bytesOf(data);
  const L = b.length;
  const head = Math.min(L, 4);
  let prefix = true;
  for (let i = 0; i < head; i++) if (b[i] !== MAGIC[i]) prefix = false;
  if (L < 4 && prefix) throw new TruncatedError(`${L} bytes is shorter than the 20-byte header`);
  if (!prefix) throw new NotGsiError("not a .gsi file (bad magic bytes)");
  if (L >= 5 && !VERSIONS.includes(b[4])) {
    throw new UnsupportedVersionError(`format version ${b[4]} is not supported (this reader knows versions 1 and 2)`);
  }
  if (L < HEADER_SIZE) throw new TruncatedError(`${L} bytes is shorter than the 20-byte header`);
  const v = new DataView(b.buffer, b.byteOffset, HEADER_SIZE);
  const h = {
    version: b[4], mode: b[5], width: v.getUint16(6, true), height: v.getUint16(8, true),
    count: v.getUint32(10, true), metadataLength: v.getUint16(14, true), payloadLength: v.getUint32(16, true),
  };
  if (h.mode > 2) throw new HeaderError(`unknown storage mode ${h.mode}`);
  if (h.version === 2 && h.mode !== 2) throw new HeaderError(`version 2 defines only the quantized mode, not mode ${h.mode}`);
  if (h.width === 0 || h.height === 0) throw new HeaderError(`image size ${h.width}x${h.height} is empty`);
  if (h.width > MAX_DIMENSION || h.height > MAX_DIMENSION) {
    throw new LimitError(`image size ${h.width}x${h.height} exceeds ${MAX_DIMENSION} pixels per side`);
  }
  if (h.count > MAX_GAUSSIANS) throw new LimitError(`${h.count} Gaussians exceed the limit of ${MAX_GAUSSIANS}`);
  if (h.metadataLength > MAX_METADATA_BYTES) throw new LimitError(`metadata of ${h.metadataLength} bytes is over the limit`);
  const maxPayload = 64 * h.count + 4096;
  if (h.payloadLength > maxPayload) {
    throw new LimitError(`payload of ${h.payloadLength} bytes exceeds the limit of ${maxPayload} for ${h.count} Gaussians`);
  }
  return h;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Metadata entries (§3, check M1). @param {Uint8Array} b @returns {Map<string, string>} */
export function parseMetadata(b) {
  const out = new Map();
  const seen = new Set();
  let pos = 0;
  while (pos < b.length) {
    if (out.size >= MAX_METADATA_ENTRIES) throw new MetadataError(`more than ${MAX_METADATA_ENTRIES} metadata entries`);
    const k = b[pos++];
    if (k === 0) throw new MetadataError("a metadata key is empty");
    if (pos + k + 2 > b.length) throw new MetadataError("a metadata entry overruns the section");
    const keyBytes = b.subarray(pos, pos + k);
    pos += k;
    const n = b[pos] | (b[pos + 1] << 8);
    pos += 2;
    if (pos + n > b.length) throw new MetadataError("a metadata value overruns the section");
    const valueBytes = b.subarray(pos, pos + n);
    pos += n;
    let key, value;
    try {
      key = utf8.decode(keyBytes);
      value = utf8.decode(valueBytes);
    } catch {
      throw new MetadataError("metadata is not valid UTF-8");
    }
    // equal well-formed UTF-8 strings have equal bytes, so comparing strings compares bytes
    if (seen.has(key)) throw new MetadataError(`duplicate metadata key ${JSON.stringify(key)}`);
    seen.add(key);
    out.set(key, value);
  }
  return out;
}

/**
 * One zstd frame's header and block structure checked against §5 rules 1-6.
 * @param {Uint8Array} slot @param {number} remaining what is left of R
 * @returns {{size: number, headerEnd: number}} the declared content size and where the blocks start
 */
function checkFrame(slot, remaining) {
  for (let i = 0; i < 4; i++) {
    if (slot[i] !== ZSTD_MAGIC[i]) throw new StreamError("a frame slot does not start with a zstd frame");
  }
  if (slot.length < 5) throw new StreamError("a zstd frame header is cut off");
  const fhd = slot[4];
  const fcsFlag = fhd >> 6, single = (fhd >> 5) & 1, dictFlag = fhd & 3;
  if (fhd & 8) throw new StreamError("the zstd frame header's reserved bit is set");
  let pos = 5;
  let window = 0;
  if (!single) {
    if (slot.length < 6) throw new StreamError("a zstd frame header is cut off");
    const wd = slot[pos++];
    const base = 2 ** (10 + (wd >> 3));
    window = base + (base / 8) * (wd & 7);
  }
  const fcsSize = fcsFlag === 0 ? single : [0, 2, 4, 8][fcsFlag];
  if (fcsSize === 0) throw new StreamError("a zstd frame does not declare its content size");
  if (dictFlag || fhd & 4) throw new StreamError("a zstd frame declares a dictionary or a content checksum");
  if (pos + fcsSize > slot.length) throw new StreamError("a zstd frame header is cut off");
  let size = 0;
  for (let i = fcsSize - 1; i >= 0; i--) size = size * 256 + slot[pos + i];
  if (fcsSize === 2) size += 256;
  pos += fcsSize;
  const headerEnd = pos;
  if (!single && window > MAX_WINDOW) throw new StreamError(`a zstd frame window of ${window} bytes exceeds 2^27`);
  if (size > remaining) throw new StreamError("zstd frames declare more than the raw body holds");
  for (;;) {
    if (pos + 3 > slot.length) throw new StreamError("a zstd frame runs past its slot");
    const bh = slot[pos] | (slot[pos + 1] << 8) | (slot[pos + 2] << 16);
    pos += 3;
    const type = (bh >> 1) & 3, blockSize = bh >>> 3;
    if (type === 3) throw new StreamError("a zstd block of the reserved type");
    if (blockSize > MAX_BLOCK) throw new StreamError("a zstd block over 128 KiB");
    pos += type === 1 ? 1 : blockSize;
    if (pos > slot.length) throw new StreamError("a zstd frame runs past its slot");
    if (bh & 1) break;
  }
  if (pos !== slot.length) throw new StreamError("bytes follow a zstd frame inside its slot");
  return { size, headerEnd };
}

/**
 * Decompress a frame table (§5, checks S1-S6) to `R` bytes.
 * @param {Uint8Array} b the payload from the frame count on
 * @param {number} R
 * @param {boolean} exact whether the slots must end exactly at the end of `b` (float modes)
 * @returns {{raw: Uint8Array, end: number, frames: number}}
 */
function unpackFrames(b, R, exact) {
  if (b.length < 1) throw new TruncatedError("the payload ends before its frame table");
  const F = b[0];
  if (F < 1 || F > MAX_FRAMES) throw new StreamError(`frame count ${F} is outside 1..${MAX_FRAMES}`);
  if (b.length < 1 + 4 * F) throw new TruncatedError("the payload ends inside its frame table");
  const v = new DataView(b.buffer, b.byteOffset + 1, 4 * F);
  const lengths = [];
  let end = 1 + 4 * F;
  for (let i = 0; i < F; i++) {
    lengths.push(v.getUint32(4 * i, true));
    end += lengths[i];
  }
  if (exact ? end !== b.length : end > b.length) {
    throw new StreamError(`the frames end at byte ${end} of a ${b.length}-byte payload`);
  }
  const raw = new Uint8Array(R);
  let pos = 1 + 4 * F, got = 0;
  for (const length of lengths) {
    const slot = b.subarray(pos, pos + length);
    pos += length;
    const { size, headerEnd } = checkFrame(slot, R - got);
    const start = got;
    // fzstd's one-shot call trusts the declared size, so decode block by block and count. Its streaming
    // decoder keeps a window-sized buffer that a raw block larger than the window (allowed) overflows:
    // give it the same blocks under a single-segment header, whose window is the whole content.
    const frame = new Uint8Array(9 + slot.length - headerEnd);
    frame.set(ZSTD_MAGIC);
    frame[4] = 0xa0;  // Frame_Content_Size_flag 2 (4 bytes), Single_Segment_flag 1
    new DataView(frame.buffer).setUint32(5, size, true);
    frame.set(slot.subarray(headerEnd), 9);
    const stream = new Decompress((chunk) => {
      if (got + chunk.length > start + size) throw new StreamError("a zstd frame decodes to more than it declares");
      raw.set(chunk, got);
      got += chunk.length;
    });
    try {
      stream.push(frame, true);
    } catch (e) {
      throw e instanceof StreamError ? e : new StreamError(`corrupt zstd frame: ${e.message}`);
    }
    if (got !== start + size) throw new StreamError(`a zstd frame decoded to ${got - start} bytes, declared ${size}`);
  }
  if (got !== R) throw new StreamError(`the zstd frames hold ${got} bytes, expected ${R}`);
  return { raw, end, frames: F };
}

/** The float16 bit pattern `h` as a number (exact). @param {number} h */
function half(h) {
  const e = (h >> 10) & 31, f = h & 1023, s = h & 0x8000 ? -1 : 1;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1024 + f) * 2 ** (e - 25);
}

/** @param {Float32Array} means @param {Float32Array} chol @param {Float32Array} colors */
function checkParameters(means, chol, colors) {
  for (const a of [means, chol, colors]) {
    for (let i = 0; i < a.length; i++) {
      if (!Number.isFinite(a[i])) throw new ParameterError("a decoded parameter is NaN or infinite");
    }
  }
  for (let i = 0; i < chol.length; i += 3) {
    if (!(chol[i] > 0 && chol[i + 2] > 0)) throw new ParameterError("a scale (l11 or l22) is not greater than 0");
  }
}

/** Float payload (§6). @param {Uint8Array} b @param {Header} h */
function decodeFloat(b, h) {
  const w = h.mode === 0 ? 4 : 2, n = h.count;
  const { raw, frames } = unpackFrames(b, 8 * n * w, true);
  const fields = Array.from({ length: 8 }, () => new Float32Array(n));
  const u32 = new Uint32Array(1), f32 = new Float32Array(u32.buffer);
  for (let f = 0; f < 8; f++) {
    const at = f * w * n, out = fields[f];
    for (let i = 0; i < n; i++) {
      if (w === 4) {
        u32[0] = raw[at + i] | (raw[at + n + i] << 8) | (raw[at + 2 * n + i] << 16) | (raw[at + 3 * n + i] << 24);
        out[i] = f32[0];
      } else {
        out[i] = half(raw[at + i] | (raw[at + n + i] << 8));
      }
    }
  }
  const means = new Float32Array(2 * n), chol = new Float32Array(3 * n), colors = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    means[2 * i] = fields[0][i]; means[2 * i + 1] = fields[1][i];
    chol[3 * i] = fields[2][i]; chol[3 * i + 1] = fields[3][i]; chol[3 * i + 2] = fields[4][i];
    colors[3 * i] = fields[5][i]; colors[3 * i + 1] = fields[6][i]; colors[3 * i + 2] = fields[7][i];
  }
  checkParameters(means, chol, colors);
  return { gaussians: { width: h.width, height: h.height, count: n, means, chol, colors }, frames, quantization: null };
}

/** Whether `c` is a valid token config byte (§7.2). @param {number} c */
function validConfig(c) {
  const s = c & 15, m = c >> 4;
  return s <= 7 && m <= Math.min(s, 2);
}

/** Even bits of a 32-bit integer, packed (one coordinate of a Morton code). @param {number} v */
function compact(v) {
  v &= 0x55555555;
  v = (v | (v >>> 1)) & 0x33333333;
  v = (v | (v >>> 2)) & 0x0f0f0f0f;
  v = (v | (v >>> 4)) & 0x00ff00ff;
  v = (v | (v >>> 8)) & 0x0000ffff;
  return v;
}

/**
 * The quantization table's shared part (§7.1, checks Q1-Q4).
 * @param {Uint8Array} b the payload @param {number} size the table's size in this version
 */
function parseTable(b, size) {
  if (b.length < size) throw new TruncatedError("the payload ends inside its quantization table");
  const dv = new DataView(b.buffer, b.byteOffset, size);
  const p = b[0], transform = b[1];
  if (p > MAX_POSITION_BITS) throw new HeaderError(`position_bits ${p} exceeds ${MAX_POSITION_BITS}`);
  if (transform > 1) throw new HeaderError(`unknown colour transform ${transform}`);
  const offsets = [], steps = [];
  for (let i = 0; i < 6; i++) {
    const o = dv.getFloat32(2 + 8 * i, true), s = dv.getFloat32(6 + 8 * i, true);
    if (!Number.isFinite(o) || !Number.isFinite(s) || !(s > 0)) {
      throw new HeaderError(`field ${FIELD_NAMES[i]} has offset ${o} and step ${s}; need finite, step > 0`);
    }
    offsets.push(o);
    steps.push(s);
  }
  return { p, transform, offsets, steps, dv };
}

/**
 * Positions (§7.3, Q9) and fields (§7.4, Q10) from pixel deltas, fractions and signed codes.
 * @param {Header} h @param {{p: number, transform: number, offsets: number[], steps: number[]}} t
 * @param {Float64Array} deltas @param {Uint16Array} fraction @param {Float64Array[]} codes six signed codes rows
 */
function finish(h, t, deltas, fraction, codes) {
  const n = h.count, p = t.p;
  const means = new Float32Array(2 * n);
  const grid = 2 ** p, maxX = h.width * grid, maxY = h.height * grid, mask = grid - 1;
  let M = 0;
  for (let i = 0; i < n; i++) {
    M += deltas[i];
    if (M >= TWO_40) throw new ParameterError("a position lies outside the image");
    const lo = M % TWO_32, hi = (M - lo) / TWO_32;
    const px = compact(lo) + compact(hi) * 65536, py = compact(lo >>> 1) + compact(hi >>> 1) * 65536;
    const f = fraction[i];
    const ix = px * grid + (compact(f) & mask), iy = py * grid + (compact(f >>> 1) & mask);
    if (ix > maxX || iy > maxY) throw new ParameterError("a position lies outside the image");
    means[2 * i] = ix / grid;
    means[2 * i + 1] = iy / grid;
  }
  // Q10: fields (§7.4), in float64, each rounded to float32 once
  const chol = new Float32Array(3 * n), colors = new Float32Array(3 * n);
  const v = new Float64Array(6);
  for (let i = 0; i < n; i++) {
    for (let f = 0; f < 6; f++) v[f] = t.offsets[f] + t.steps[f] * codes[f][i];
    const l22 = 2 ** v[1];
    chol[3 * i] = 2 ** v[0];
    chol[3 * i + 1] = v[2] * l22;
    chol[3 * i + 2] = l22;
    if (t.transform === 1) {
      colors[3 * i] = v[3] + v[4] - v[5];
      colors[3 * i + 1] = v[3] + v[5];
      colors[3 * i + 2] = v[3] - v[4] - v[5];
    } else {
      colors[3 * i] = v[3]; colors[3 * i + 1] = v[4]; colors[3 * i + 2] = v[5];
    }
  }
  checkParameters(means, chol, colors);
  return { width: h.width, height: h.height, count: n, means, chol, colors };
}

/** Quantized payload, version 1 (§7.1-7.4). @param {Uint8Array} b @param {Header} h */
function decodeQuantized(b, h) {
  const n = h.count;
  const t = parseTable(b, QUANT_TABLE_SIZE);
  const p = t.p;
  const configs = Array.from(b.subarray(50, 57));
  configs.forEach((c, j) => {
    if (!validConfig(c)) throw new HeaderError(`token stream ${j} has an invalid config byte ${c}`);
  });
  const body = b.subarray(QUANT_TABLE_SIZE);
  const { raw: tokens, end, frames } = unpackFrames(body, 7 * n, false);

  // Q6: tokens within MAX_TOKEN; per stream, the extra-bit count and leading value of each token
  const widths = [], leads = [];
  let total = 2 * p * n;
  for (let j = 0; j < 7; j++) {
    const s = configs[j] & 15, m = configs[j] >> 4;
    const maxToken = 2 ** s + (31 - s) * 2 ** m + 2 ** m - 1;
    const width = new Uint8Array(256), lead = new Float64Array(256);
    for (let t = 0; t < 256; t++) {
      if (t < 2 ** s) { lead[t] = t; continue; }
      const k = t - 2 ** s, nb = s + (k >> m);
      width[t] = nb - m;
      lead[t] = (2 ** m + (k & (2 ** m - 1))) * 2 ** (nb - m);
    }
    const row = tokens.subarray(j * n, (j + 1) * n);
    for (let i = 0; i < n; i++) {
      if (row[i] > maxToken) throw new ParameterError(`token ${row[i]} exceeds ${maxToken} (token config ${configs[j]})`);
      total += width[row[i]];
    }
    widths.push(width);
    leads.push(lead);
  }
  // Q7, Q8: the extra bits fill the rest exactly, padding zero
  const extra = body.subarray(end);
  const need = Math.ceil(total / 8);
  if (extra.length < need) throw new TruncatedError(`the extra bits need ${need} bytes, the payload holds ${extra.length}`);
  if (extra.length > need) throw new StreamError(`${extra.length - need} bytes follow the extra bits`);
  if (total % 8 && extra[need - 1] >> (total % 8)) throw new StreamError("the padding bits after the extra bits are not zero");
  const read = bitReader(extra);
  const values = Array.from({ length: 7 }, () => new Float64Array(n));
  const fraction = new Uint16Array(n);
  for (let j = 0; j < 7; j++) {
    if (j === 1) for (let i = 0; i < n; i++) fraction[i] = read(2 * p);
    const row = tokens.subarray(j * n, (j + 1) * n), width = widths[j], lead = leads[j], out = values[j];
    for (let i = 0; i < n; i++) out[i] = lead[row[i]] + read(width[row[i]]);
  }
  const codes = values.slice(1).map((row) => row.map((u) => (u % 2 ? -(u + 1) / 2 : u / 2)));
  return {
    gaussians: finish(h, t, values[0], fraction, codes),
    frames,
    quantization: { positionBits: p, colorTransform: t.transform, offsets: t.offsets, steps: t.steps, configs,
                    deltaShift: null },
  };
}

/**
 * A reader of `e` bits at a time (e <= 32), least significant first, from `bytes` (§7.1); reads past the end give 0.
 * @param {Uint8Array} bytes
 */
function bitReader(bytes) {
  const bits = new Uint8Array(bytes.length + 8);
  bits.set(bytes);
  let pos = 0;
  const read = (e) => {
    if (e === 0) return 0;
    const at = pos >> 3;
    const window = bits[at] + bits[at + 1] * 256 + bits[at + 2] * 65536 + bits[at + 3] * 16777216 + bits[at + 4] * TWO_32;
    const v = Math.floor(window / 2 ** (pos & 7)) % 2 ** e;
    pos += e;
    return v;
  };
  read.position = () => pos;
  return read;
}

/** The class of a decoded field code as a context (§7.6). @param {number} x */
function fieldClass(x) {
  if (x === 0) return 0;
  const a = Math.abs(x);
  const k = a >= 8 ? 4 : a >= 4 ? 3 : a >= 2 ? 2 : 1;
  return 2 * k - 1 + (x < 0 ? 1 : 0);
}

const SHIFT = Uint8Array.from({ length: 32 }, (_, n) => Math.min(32 - Math.clz32(n + 1), 6));
const CONTEXT_SOURCE = [-1, 0, 1, 0, 3, 4];
// the adaptive tables of §7.7 in one array: DU[32], DM[33], FU[6][9][32], FS[6][9], FM[6][33]
const DU = 0, DM = DU + 32, FU = DM + 33, FS = FU + 6 * 9 * 32, FM = FS + 6 * 9, MODEL_SIZE = FM + 6 * 33;

/** Quantized payload, version 2 (§7.6, §7.7: the range coder). @param {Uint8Array} b @param {Header} h */
function decodeQuantizedV2(b, h) {
  const n = h.count;
  const t = parseTable(b, V2_TABLE_SIZE);
  const p = t.p;
  const shift = b[50], C = t.dv.getUint32(51, true);
  if (shift > 31) throw new HeaderError(`delta shift ${shift} exceeds 31`);
  if (C > b.length - V2_TABLE_SIZE) throw new TruncatedError(`coded length ${C} runs past the payload`);
  const coded = b.subarray(V2_TABLE_SIZE, V2_TABLE_SIZE + C);
  if (C > 0 && coded[C - 1] === 0) throw new StreamError("the coded bytes end with a zero byte");
  const raw = b.subarray(V2_TABLE_SIZE + C);
  const rawBits = 8 * raw.length;
  const read = bitReader(raw);
  const readRaw = (e) => {
    const v = read(e);
    if (read.position() > rawBits) throw new TruncatedError(`the raw bits run past the end of the payload (${raw.length} bytes)`);
    return v;
  };

  const P = new Uint16Array(MODEL_SIZE).fill(32768), count = new Uint8Array(MODEL_SIZE);
  const byte = (j) => (j < C ? coded[j] : 0);
  let R = 0xffffffff, V = byte(0) * 16777216 + byte(1) * 65536 + byte(2) * 256 + byte(3), j = 4;
  const bit = (e) => {
    const prob = P[e], bound = (R >>> 16) * prob;
    let out;
    if (V < bound) { out = 0; R = bound; } else { out = 1; V -= bound; R -= bound; }
    const s = SHIFT[count[e]];
    P[e] = out ? prob - (prob >> s) : prob + ((65536 - prob) >> s);
    if (count[e] < 31) count[e]++;
    while (R < 16777216) {
      R *= 256;
      V = ((V << 8) | byte(j)) >>> 0;
      j++;
    }
    return out;
  };
  const integer = (U, S, M) => {
    let k = 0;
    while (k < 32 && bit(U + k) === 1) k++;
    const negative = S >= 0 && k >= 1 ? bit(S) : 0;
    let a = k === 0 ? 0 : 1;
    if (k >= 2) a = (2 + bit(M + k)) * 2 ** (k - 2) + readRaw(k - 2);
    return negative ? -a : a;
  };

  const deltas = new Float64Array(n), fraction = new Uint16Array(n);
  const codes = Array.from({ length: 6 }, () => new Float64Array(n));
  const q = new Float64Array(6);
  let previous = 0;
  for (let i = 0; i < n; i++) {
    deltas[i] = integer(DU, -1, DM) * 2 ** shift + readRaw(shift);
    fraction[i] = readRaw(2 * p);
    for (let f = 0; f < 6; f++) {
      const src = CONTEXT_SOURCE[f];
      const c = fieldClass(src < 0 ? previous : q[src]);
      q[f] = integer(FU + (f * 9 + c) * 32, FS + f * 9 + c, FM + f * 33);
      codes[f][i] = q[f];
    }
    previous = q[0];
  }
  // R5, R6, R7
  if (j < C) throw new StreamError(`${C - j} coded bytes are never read`);
  const used = read.position(), need = Math.ceil(used / 8);
  if (raw.length > need) throw new StreamError(`${raw.length - need} bytes follow the raw bits`);
  if (used % 8 && raw[need - 1] >> (used % 8)) throw new StreamError("the padding bits after the raw bits are not zero");
  for (let i = 0; i < n; i++) if (deltas[i] >= TWO_32) throw new ParameterError("a pixel delta is 2^32 or more");
  return {
    gaussians: finish(h, t, deltas, fraction, codes),
    frames: 0,
    quantization: { positionBits: p, colorTransform: t.transform, offsets: t.offsets, steps: t.steps, configs: null,
                    deltaShift: shift },
  };
}

/**
 * Parse and validate a whole `.gsi` file. Throws only {@link GsiError} subclasses, the first
 * failing check in the order of spec §11.1.
 * @param {ArrayBuffer | ArrayBufferView} data
 * @returns {GsiFile}
 */
export function decode(data) {
  const b = bytesOf(data);
  const header = parseHeader(b);
  const size = 24 + header.metadataLength + header.payloadLength;
  if (b.length < size) throw new TruncatedError(`the file has ${b.length} bytes, its header declares ${size}`);
  if (b.length > size) throw new TrailingDataError(`${b.length - size} bytes follow the checksum`);
  const stored = new DataView(b.buffer, b.byteOffset + size - 4, 4).getUint32(0, true);
  if (crc32(b.subarray(0, size - 4)) !== stored) throw new ChecksumError("CRC-32 mismatch: the file is corrupt");
  const metaEnd = HEADER_SIZE + header.metadataLength;
  const metadata = parseMetadata(b.subarray(HEADER_SIZE, metaEnd));
  const payload = b.subarray(metaEnd, size - 4);
  const body = header.mode !== 2 ? decodeFloat(payload, header)
    : header.version === 2 ? decodeQuantizedV2(payload, header) : decodeQuantized(payload, header);
  return { header, metadata, ...body };
}
