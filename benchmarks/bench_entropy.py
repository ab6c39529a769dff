"""Where a quantized `.gsi` file's bytes go: bytes per Gaussian per field, version 1 (zstd tokens) against 2 (range coder).

    python benchmarks/bench_entropy.py /tmp/corpus/d0.004 /tmp/corpus/d0.01 /tmp/corpus/d0.03 [--time]

Each argument is a folder of quantized `.gsi` files (for example made with
``gsi encode PHOTOS -o DIR --density D --effort 1``), reported as one group.
Every file is written again as version 1 and as version 2 from the same
quantized codes, both are decoded, and the decoded parameters must be equal
(so both decode to the same image). Per field, the version-1 column is the
field's token stream compressed alone by zstd (level 22) plus its extra bits,
and the version-2 column is the ideal cost of its coded bits (``-log2`` of
each bit's probability) plus its raw bits; the totals are the real payload
and file sizes. With ``--time`` the payload parse alone (bytes to codes) is
timed for the largest file of each group, version 1 and 2 interleaved, in
the thread's CPU time (less disturbed by other processes than wall time).

``--predictors`` measures whether neighbours predict the fields: per field,
the bits per Gaussian of the residual ``q - prediction`` for each predictor
(none; the previous Gaussian along the Morton curve; the nearest earlier
Gaussian in space; the mean of both; the median of those two and the second
nearest), as the static entropy of its sign and bit length plus its bits
below the leading one, the same binarization as version 2's coder.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import zstandard

import gscodec
from gscodec.format.header import HEADER_SIZE
from gscodec.format.payload import (_symbols, encode_quantized, parse_quantized, parse_quantized_v2, zigzag)
from gscodec.format.rangecoder import encode_symbols
from gscodec.format.tokens import choose_config, tokenize
from gscodec.quantize import FIELD_NAMES, QuantizedGaussians

PARTS = ("position",) + FIELD_NAMES


def read_codes(data: bytes) -> QuantizedGaussians:
    """The quantized codes of `.gsi` bytes of either version."""
    h = gscodec.decode(data).header
    payload = memoryview(data)[HEADER_SIZE + h.metadata_length : len(data) - 4]
    parse = parse_quantized_v2 if h.version == 2 else parse_quantized
    return parse(payload, h.width, h.height, h.count)


def v1_parts(qg: QuantizedGaussians) -> np.ndarray:
    """Bytes of each part in version 1: its token stream as a zstd frame of its own plus its extra bits."""
    deltas, fraction, codes = _symbols(qg)
    zstd = zstandard.ZstdCompressor(level=22, write_content_size=True, write_checksum=False)
    streams = [deltas] + [zigzag(codes[f]) for f in range(len(FIELD_NAMES))]
    out = np.zeros(len(PARTS))
    for j, s in enumerate(streams):
        tokens, _, nbits = tokenize(s, choose_config(s))
        out[j] = len(zstd.compress(tokens.tobytes())) + int(nbits.sum()) / 8
    out[0] += qg.count * 2 * qg.position_bits / 8
    return out


def v2_parts(qg: QuantizedGaussians, delta_shift: int) -> np.ndarray:
    """Bytes of each part in version 2: the ideal cost of its coded bits plus its raw bits."""
    deltas, fraction, codes = _symbols(qg)
    cost = np.zeros(len(PARTS))
    encode_symbols(deltas, fraction, codes, 2 * qg.position_bits, delta_shift, cost)
    return cost / 8


def _bitlen(a: np.ndarray) -> np.ndarray:
    out = np.zeros(a.shape, dtype=np.int64)
    nz = a > 0
    out[nz] = np.frexp(a[nz].astype(np.float64))[1]
    return out


def residual_bits(r: np.ndarray) -> float:
    """Static entropy of the (sign, bit length) symbols of ``r`` plus the bits below each leading one."""
    k = _bitlen(np.abs(r))
    _, counts = np.unique(2 * k + (r < 0), return_counts=True)
    return float(-(counts * np.log2(counts / r.size)).sum() + np.maximum(k - 1, 0).sum())


def predictor_bits(qg: QuantizedGaussians) -> dict[str, np.ndarray]:
    """Bits of each field ``(6,)`` under each predictor (see the module docstring)."""
    from scipy.spatial import cKDTree

    n = qg.count
    pts = np.stack([qg.ix, qg.iy], axis=1).astype(np.float64)
    _, idx = cKDTree(pts).query(pts, k=min(32, n))
    idx = idx.reshape(n, -1)
    near = np.full((n, 2), -1)
    for i in range(n):
        earlier = idx[i][idx[i] < i][:2]
        near[i, : earlier.size] = earlier
    out = {name: np.zeros(len(FIELD_NAMES)) for name in ("none", "previous", "nearest", "mean", "median")}
    for f in range(len(FIELD_NAMES)):
        q = qg.codes[f]
        prev = np.r_[0, q[:-1]]
        nn = np.where(near[:, 0] >= 0, q[np.maximum(near[:, 0], 0)], 0)
        nn2 = np.where(near[:, 1] >= 0, q[np.maximum(near[:, 1], 0)], nn)
        preds = {"none": 0, "previous": prev, "nearest": nn, "mean": (prev + nn) >> 1,
                 "median": np.median(np.stack([prev, nn, nn2]), axis=0).astype(np.int64)}
        for name, pred in preds.items():
            out[name][f] = residual_bits(q - pred)
    return out


def same_decode(a: bytes, b: bytes) -> bool:
    ga, gb = gscodec.decode(a).gaussians, gscodec.decode(b).gaussians
    return all(np.array_equal(getattr(ga, t), getattr(gb, t)) for t in ("means", "chol", "colors"))


def parse_time(data: bytes, repeats: int) -> tuple[float, float]:
    """Minimum thread CPU seconds of the payload parse (bytes to codes) of ``data`` as version 1 and as version 2."""
    qg = read_codes(data)
    v1 = encode_quantized(qg)
    v2 = gscodec.encode(qg, version=2)
    h = gscodec.decode(v2).header
    p2 = memoryview(v2)[HEADER_SIZE : len(v2) - 4]
    t1, t2 = [], []
    for _ in range(repeats):
        t = time.thread_time()
        parse_quantized(memoryview(v1), h.width, h.height, h.count)
        t1.append(time.thread_time() - t)
        t = time.thread_time()
        parse_quantized_v2(p2, h.width, h.height, h.count)
        t2.append(time.thread_time() - t)
    return min(t1), min(t2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--time", action="store_true", help="time the payload parse of each group's largest file")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--predictors", action="store_true", help="measure neighbour predictors of the fields")
    args = parser.parse_args()
    header = f"{'group':<10} {'files':>5} {'N/file':>7} {'version':>7} " + " ".join(f"{p:>9}" for p in PARTS)
    header += f" {'payload':>8} {'file':>8} {'bpp':>7}"
    print("bytes per Gaussian")
    print(header)
    for folder in args.folders:
        files = sorted(folder.glob("*.gsi"))
        if not files:
            raise SystemExit(f"no .gsi files in {folder}")
        parts = {1: np.zeros(len(PARTS)), 2: np.zeros(len(PARTS))}
        payload = {1: 0, 2: 0}
        size = {1: 0, 2: 0}
        count = pixels = 0
        largest = None
        predicted: dict[str, np.ndarray] = {}
        for path in files:
            qg = read_codes(path.read_bytes())
            meta = gscodec.peek(path).metadata
            files_v = {v: gscodec.encode(qg, version=v, metadata=meta) for v in (1, 2)}
            if not same_decode(files_v[1], files_v[2]):
                raise SystemExit(f"{path}: versions 1 and 2 decode differently")
            h2 = gscodec.decode(files_v[2]).header
            shift = files_v[2][HEADER_SIZE + h2.metadata_length + 50]
            parts[1] += v1_parts(qg)
            parts[2] += v2_parts(qg, shift)
            for v in (1, 2):
                h = gscodec.decode(files_v[v]).header
                payload[v] += h.payload_length
                size[v] += len(files_v[v])
            count += qg.count
            pixels += qg.width * qg.height
            if args.predictors:
                for name, bits in predictor_bits(qg).items():
                    predicted[name] = predicted.get(name, 0) + bits
            if largest is None or qg.count > largest[0]:
                largest = (qg.count, files_v[1])
        for v in (1, 2):
            row = f"{folder.name:<10} {len(files):>5} {count // len(files):>7} {v:>7} "
            row += " ".join(f"{b / count:>9.3f}" for b in parts[v])
            row += f" {payload[v] / count:>8.3f} {size[v] / count:>8.3f} {8 * size[v] / pixels:>7.4f}"
            print(row)
        print(f"{folder.name:<10} version 2 / version 1: payload {payload[2] / payload[1]:.4f}, "
              f"file {size[2] / size[1]:.4f}, bpp {8 * (size[2] - size[1]) / pixels:+.4f}")
        for name, bits in predicted.items():
            print(f"{folder.name:<10} predictor {name:<9} bytes per Gaussian per field (static entropy): "
                  + " ".join(f"{b / 8 / count:.3f}" for b in bits))
        if args.time:
            t1, t2 = parse_time(largest[1], args.repeats)
            print(f"{folder.name:<10} payload parse of {largest[0]} Gaussians: version 1 {t1 * 1e3:.3f} ms, "
                  f"version 2 {t2 * 1e3:.3f} ms ({t2 / t1:.2f}x)")


if __name__ == "__main__":
    main()
