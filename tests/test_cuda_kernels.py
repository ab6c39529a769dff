"""The Triton GPU backend: kernels against the dense reference (compiled on a GPU, else in the Triton
interpreter), tile binning, the device switch and import hygiene.

The interpreter must be chosen before triton is imported (``TRITON_INTERPRET=1``),
so in a normal run ``test_kernels_in_interpreter`` re-runs this file's
``test_interp_*`` tests in a subprocess with it set (and no CUDA device visible);
in-process they run compiled on CUDA tensors where a GPU is, and skip elsewhere;
with ``TRITON_INTERPRET=1`` already set they run in-process on CPU tensors. Nothing else
in this process imports triton on a machine without a GPU: the import and
GPU-compile checks run in subprocesses too.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gscodec.raster.triton.availability as device_mod
from gscodec.raster.triton import rasterize_sum
from gscodec.raster.triton.binning import TILE, bin_tiles, bin_tiles_gsplat, bin_tiles_torch, gaussian_boxes
from gscodec.raster.triton.availability import resolve_device
from gscodec.limits import CUTOFF_SQ
from gscodec.raster import BackendUnavailableError
from gscodec.raster import rasterize_sum as public_rasterize_sum
from gscodec.raster.reference import rasterize_sum as reference

from .conftest import Params, random_params

ROOT = Path(__file__).resolve().parents[1]
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
GPU = torch.cuda.is_available() and not INTERPRET
DEVICE = torch.device("cuda" if GPU else "cpu")
"""Where the kernel tests run: compiled on the GPU, else in the interpreter on the CPU."""
interp_only = pytest.mark.skipif(not (INTERPRET or GPU), reason="runs in the TRITON_INTERPRET=1 subprocess")

def assert_matches_reference(
    params: Params, width: int, height: int, counts: torch.Tensor | None = None, backend: str | None = None
) -> None:
    """Values and the gradients of means, chol and colors match the float32 reference (random upstream gradient)."""
    leaves = [p.clone().requires_grad_(True) for p in params]
    ref_leaves = [p.clone().requires_grad_(True) for p in params]
    if backend is None:
        out = rasterize_sum(*leaves, width, height, counts)
    else:
        out = public_rasterize_sum(*leaves, width, height, counts, backend=backend)
    expected = reference(*ref_leaves, width, height, counts)
    assert out.shape == expected.shape and out.dtype == torch.float32
    # A pixel on the wrong side of the cutoff would be off by exp(-4.5) * |colour| ~ 1e-2.
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(7)).to(out.device)
    got = torch.autograd.grad(out, leaves, grad_out)
    want = torch.autograd.grad(expected, ref_leaves, grad_out)
    for name, g, w in zip(("means", "chol", "colors"), got, want):
        scale = float(w.abs().max().clamp(min=1.0))
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * scale, msg=lambda m, name=name: f"grad {name}: {m}")


def tile_lists(starts: torch.Tensor, ids: torch.Tensor) -> list[list[int]]:
    """Per (image, tile) Gaussian flat indices."""
    s = starts.tolist()
    flat = ids.tolist()
    return [flat[s[t] : s[t + 1]] for t in range(len(s) - 1)]


# ---------------------------------------------------------------- kernels (compiled on a GPU, else interpreted)


@interp_only
def test_interp_batch_with_mixed_counts_odd_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """19x13 (two partial tiles), three images using 24, 5 and 0 of 24 slots, Gaussians reaching off the image."""
    from gscodec.raster.triton import kernels

    monkeypatch.setattr(kernels, "INTERPRETER_BLOCK_G", kernels.BLOCK_G)  # the GPU's step size, so the loop runs
    params = tuple(t.to(DEVICE)
                   for t in random_params(24, 19, 13, seed=1, batch=3, margin=6.0, sigma_offset=0.5))
    counts = torch.tensor([24, 5, 0], device=DEVICE)
    assert_matches_reference(params, 19, 13, counts)
    # The tile lists are longer than one kernel step, so the step loop and its tail mask run.
    centers, radii = gaussian_boxes(params[0], params[1], counts, 19, 13)
    from gscodec.raster.triton.kernels import BLOCK_G

    assert max(map(len, tile_lists(*bin_tiles(centers, radii, 2, 1)))) > BLOCK_G


@interp_only
def test_interp_multi_tile_and_off_image_gaussians() -> None:
    """Unbatched 40x37 (3x3 tiles): one Gaussian over all nine tiles, some partly and some wholly off the image."""
    means = torch.tensor([[20.0, 18.0], [-2.0, 5.0], [41.0, 36.5], [-60.0, 10.0], [20.0, 90.0], [33.3, 7.7]],
                         device=DEVICE)
    chol = torch.tensor(
        [[8.0, 3.0, 7.0], [2.0, 0.5, 3.0], [1.5, -1.0, 2.0], [3.0, 0.0, 3.0], [2.0, 1.0, 2.0], [1.2, 0.7, 0.9]],
        device=DEVICE,
    )
    colors = torch.tensor(
        [[0.5, -0.2, 0.1], [1.0, 0.3, -0.4], [0.2, 0.9, 0.1], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [-0.7, 0.4, 0.8]],
        device=DEVICE,
    )
    assert_matches_reference((means, chol, colors), 40, 37)
    centers, radii = gaussian_boxes(means[None], chol[None], torch.tensor([6], device=DEVICE), 40, 37)
    lists = tile_lists(*bin_tiles(centers, radii, 3, 3))
    assert all(0 in tile for tile in lists)
    assert not any(3 in tile or 4 in tile for tile in lists)


@interp_only
def test_interp_empty_inputs_and_public_wrapper() -> None:
    """All-padding and zero-Gaussian batches render black with zero gradients; ``backend="cuda"`` dispatches here."""
    means, chol, colors = random_params(5, 17, 16, seed=2, batch=2, margin=6.0, sigma_offset=0.5)
    leaves = [t.to(DEVICE).requires_grad_(True) for t in (means, chol, colors)]
    out = rasterize_sum(*leaves, 17, 16, torch.tensor([0, 0], device=DEVICE))
    assert out.shape == (2, 16, 17, 3) and not out.any()
    for grad in torch.autograd.grad(out.sum(), leaves):
        assert not grad.any()
    empty = [torch.zeros(2, 0, k, device=DEVICE, requires_grad=True) for k in (2, 3, 3)]
    out = rasterize_sum(*empty, 17, 16)
    assert out.shape == (2, 16, 17, 3) and not out.any()
    assert [g.shape for g in torch.autograd.grad(out.sum(), empty)] == [e.shape for e in empty]
    params = tuple(t.to(DEVICE) for t in random_params(7, 21, 18, seed=3, margin=6.0, sigma_offset=0.5))
    assert_matches_reference(params, 21, 18, backend="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_kernels_match_reference() -> None:
    """On a real GPU: compiled kernels (gsplat or PyTorch binning) against the reference on the same device."""
    params = tuple(t.cuda()
                   for t in random_params(300, 101, 67, seed=5, batch=3, margin=6.0, sigma_offset=0.5))
    assert_matches_reference(params, 101, 67, torch.tensor([300, 120, 0], device="cuda"))


# ---------------------------------------------------------------- binning


def gsplat_tile_lists(centers: torch.Tensor, radii: torch.Tensor, tiles_x: int, tiles_y: int) -> list[list[int]]:
    """A loop transcription of gsplat's ``intersect_tile_kernel`` (float32 math, saturating casts)."""
    b, n = centers.shape[:2]
    lists: list[list[int]] = [[] for _ in range(b * tiles_x * tiles_y)]
    c32 = centers.reshape(-1, 2)
    r32 = radii.reshape(-1, 2).float()
    for idx in range(b * n):
        if r32[idx, 0] <= 0 or r32[idx, 1] <= 0:
            continue
        t = c32[idx] / TILE
        r = r32[idx] / TILE
        lo = [min(max(0, int(math.floor(v))), lim) for v, lim in zip((t - r).tolist(), (tiles_x, tiles_y))]
        hi = [min(max(0, int(math.ceil(v))), lim) for v, lim in zip((t + r).tolist(), (tiles_x, tiles_y))]
        for i in range(lo[1], hi[1]):
            for j in range(lo[0], hi[0]):
                lists[(idx // n) * tiles_x * tiles_y + i * tiles_x + j].append(idx)
    return lists


def binning_case() -> tuple[Params, torch.Tensor, int, int]:
    """Random Gaussians plus a huge one, a far-off one, a NaN one and degenerate ones; a padded batch."""
    means, chol, colors = random_params(40, 45, 35, seed=4, batch=3, margin=12.0, sigma_offset=0.5)
    means[0, 0] = torch.tensor([20.0, 15.0])
    chol[0, 0] = torch.tensor([30.0, -20.0, 25.0])
    means[0, 1] = torch.tensor([1e7, -3e6])
    means[1, 2, 0] = float("nan")
    chol[1, 3, 0] = 0.0
    chol[1, 4, 2] = 0.0
    return (means, chol, colors), torch.tensor([40, 40, 11]), 45, 35


def test_binning_matches_gsplat_rules_and_covers_every_hit() -> None:
    """The PyTorch binning equals gsplat's rules and lists every (tile, Gaussian) with a pixel within the cutoff."""
    (means, chol, _), counts, width, height = binning_case()
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    centers, radii = gaussian_boxes(means, chol, counts, width, height)
    starts, ids = bin_tiles_torch(centers, radii, tiles_x, tiles_y)
    assert starts.dtype == ids.dtype == torch.int32 and starts[-1] == ids.numel()
    lists = tile_lists(starts, ids)
    assert lists == gsplat_tile_lists(centers, radii, tiles_x, tiles_y)
    assert lists == tile_lists(*bin_tiles(centers, radii, tiles_x, tiles_y))  # "auto" on CPU
    skipped = radii[..., 0] == 0
    assert skipped[0, 1] and skipped[1, 2] and skipped[1, 3] and skipped[1, 4] and skipped[2, 11:].all()
    assert sum(0 in tile for tile in lists) == tiles_x * tiles_y

    # Every pixel within the cutoff (the reference's float32 d2) lies in a tile that lists its Gaussian.
    px = torch.arange(width, dtype=torch.float32) + 0.5
    py = torch.arange(height, dtype=torch.float32) + 0.5
    x, y = means[..., 0, None, None], means[..., 1, None, None]
    l11, l21, l22 = (chol[..., i, None, None] for i in range(3))
    z1 = (px[None, None, None, :] - x) / l11
    z2 = ((py[None, None, :, None] - y) - l21 * z1) / l22
    used = torch.arange(means.shape[1])[None, :] < counts[:, None]
    hit = ((z1 * z1 + z2 * z2) <= CUTOFF_SQ) & used[..., None, None]  # (B, N, H, W)
    listed = torch.zeros(means.shape[0], means.shape[1], tiles_y, tiles_x, dtype=torch.bool)
    for t, tile in enumerate(lists):
        for flat in tile:
            listed[flat // means.shape[1], flat % means.shape[1], (t // tiles_x) % tiles_y, t % tiles_x] = True
    per_pixel = listed.repeat_interleave(TILE, 2).repeat_interleave(TILE, 3)[..., :height, :width]
    assert hit.any() and not (hit & ~per_pixel).any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_binning_on_cuda_equals_cpu_and_gsplat() -> None:
    """The PyTorch binning gives the same lists on CUDA as on the CPU, and so does gsplat's where it is installed."""
    (means, chol, _), counts, width, height = binning_case()
    centers, radii = gaussian_boxes(means.cuda(), chol.cuda(), counts.cuda(), width, height)
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    want = tile_lists(*bin_tiles_torch(centers.cpu(), radii.cpu(), tiles_x, tiles_y))
    assert tile_lists(*bin_tiles_torch(centers, radii, tiles_x, tiles_y)) == want
    pytest.importorskip("gsplat")
    assert tile_lists(*bin_tiles_gsplat(centers, radii, tiles_x, tiles_y)) == want


# ---------------------------------------------------------------- device switch and import hygiene


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    with pytest.raises(BackendUnavailableError, match="built without CUDA"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(device_mod, "_triton_installed", lambda: False)
    with pytest.raises(BackendUnavailableError, match="triton is not installed"):
        resolve_device("cuda")


_FRESH_PROCESS_CHECKS = """
import json, sys, traceback
import torch
import gscodec, gscodec.raster.triton
report = {"eager": sorted({"triton", "gsplat", "gscodec.raster.triton.kernels"} & set(sys.modules)),
          "cuda_initialized": torch.cuda.is_initialized()}
from gscodec.raster import BackendUnavailableError, rasterize_sum
try:
    rasterize_sum(torch.zeros(1, 2), torch.ones(1, 3), torch.ones(1, 3), 4, 4, backend="cuda")
    report["cpu_error"] = None
except BackendUnavailableError as exc:
    report["cpu_error"] = str(exc)
try:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from gscodec.raster.triton import kernels
    from gscodec.raster.triton.binning import TILE
    from gscodec.limits import CUTOFF_SQ

    consts = {"CUTOFF": CUTOFF_SQ, "TILE": TILE, "BLOCK_G": kernels.BLOCK_G}
    for fn in (kernels._forward_kernel, kernels._backward_kernel):
        names = fn.arg_names
        sig = {n: "constexpr" if n in consts else "*i32" if n in ("starts_ptr", "ids_ptr")
               else "*fp32" if n.endswith("_ptr") else "i32" for n in names}
        src = ASTSource(fn=fn, signature=sig, constexprs={(names.index(k),): v for k, v in consts.items()})
        opts = {"num_warps": kernels.NUM_WARPS, "enable_fp_fusion": False}
        ptx = triton.compile(src, target=GPUTarget("cuda", 80, 32), options=opts).asm["ptx"]
        assert "div.rn.f32" in ptx, "IEEE division expected in " + fn.__name__
    report["compile_error"] = None
except Exception:
    report["compile_error"] = traceback.format_exc()
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def fresh_process() -> dict:
    """Import, call on CPU tensors and compile the kernels for sm_80 in a fresh process without the interpreter."""
    pytest.importorskip("triton")
    environ = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS_CHECKS],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_import_is_lazy_and_cpu_tensors_need_the_interpreter(fresh_process: dict) -> None:
    """Importing touches neither triton, gsplat nor CUDA; CPU tensors without the interpreter get the clear error."""
    assert fresh_process["eager"] == [] and not fresh_process["cuda_initialized"]
    message = fresh_process["cpu_error"]
    assert message is not None and "got CPU tensors" in message and "TRITON_INTERPRET=1" in message
    if not torch.cuda.is_available():
        assert "no CUDA device" in message


@pytest.mark.slow
def test_kernels_compile_for_gpu(fresh_process: dict) -> None:
    """Both kernels go through Triton's whole NVIDIA pipeline (to sm_80 machine code) without a GPU."""
    assert fresh_process["compile_error"] is None, fresh_process["compile_error"]


@pytest.mark.slow
@pytest.mark.skipif(INTERPRET, reason="already in the interpreter run")
def test_kernels_in_interpreter() -> None:
    """Run this file's ``test_interp_*`` tests with ``TRITON_INTERPRET=1`` in a fresh pytest process."""
    pytest.importorskip("triton")
    environ = os.environ | {"TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-k", "test_interp_"]
    proc = subprocess.run(cmd, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert "passed" in summary and "skipped" not in summary, summary
