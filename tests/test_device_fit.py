"""The GPU fitter without a GPU: ``fit_batch`` with the Triton backend, run in the Triton interpreter on CPU
tensors through the same code path as on CUDA, against the CPU (numba) fitter.

The interpreter must be chosen before triton is imported, so the fits run in a
fresh subprocess with ``TRITON_INTERPRET=1``. Two real photos at 32x32 with
60 Gaussians, the whole algorithm (adaptive init, densify and prune events,
plateau checks, quantization-aware end); the interpreter is slow, hence the
short schedule.

How close the two backends can be expected to be: the Triton backward sums
each Gaussian's per-tile contributions with float32 atomics, in another order
than the numba kernels, so gradients differ in the last bits and Adam (and the
error-guided sampling of densification) may amplify that over a long fit.
Centre sampling draws from the CPU generator on every device, so equal error
maps give equal draws. Measured in the interpreter (per-image |dPSNR|, three
photos): this test's fits agree to 1e-5 dB; 32x32 with 30 Gaussians and 100
steps without events to 0.074 dB; 48x48, 120 Gaussians, 60 steps with events
to 0.065 dB; 40x40, 80 Gaussians, 40 steps with the quantized end to 0.021 dB.
The bound below (0.5 dB, the issue's) leaves room for that drift.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocesses and real fits: `-m "not slow"` skips them

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = r"""
import json
import time
import numpy as np
from PIL import Image

import gscodec.raster.triton as cuda_backend
import gscodec.raster.cpu as cpu_backend
from gscodec.raster.triton import kernels
from gscodec.fit import FitConfig, fit_batch
from gscodec.fit.targets import resize_center_crop

assert kernels.INTERPRETED
calls = {"cpu": 0, "cuda": 0}

def counting(module, name):
    impl = module.rasterize_sum
    def wrapper(*args, **kwargs):
        calls[name] += 1
        return impl(*args, **kwargs)
    module.rasterize_sum = wrapper

counting(cuda_backend, "cuda")
counting(cpu_backend, "cpu")
images = [resize_center_crop(np.asarray(Image.open(f"tests/data/{n}.png").convert("RGB")), 32)
          for n in ("chelsea", "coffee")]
flat = [float(10 * np.log10(1 / ((im / 255.0 - (im / 255.0).mean((0, 1))) ** 2).mean())) for im in images]
out = {"flat": flat}
for backend in ("cpu", "cuda"):
    calls.update(cpu=0, cuda=0)
    cfg = FitConfig(points=60, effort=5, iterations=30, check_every=10, init_color_iters=3, event_color_iters=2,
                    final_color_iters=5, refit_iters=3, refit_shape_iters=3, backend=backend)
    t0 = time.perf_counter()
    out[backend] = [[r.psnr, r.psnr_unquantized, r.iterations, r.gaussians.count] for r in fit_batch(images, cfg)]
    out[backend + "_seconds"] = time.perf_counter() - t0
    out[backend + "_calls"] = dict(calls)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def fits() -> dict:
    pytest.importorskip("triton")
    environ = os.environ | {"TRITON_INTERPRET": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_gpu_fitter_in_interpreter_matches_cpu_fitter(fits: dict) -> None:
    """Per image, quantized and float PSNR within 0.5 dB of the CPU fitter; the same budget and schedule."""
    for cpu, gpu, flat in zip(fits["cpu"], fits["cuda"], fits["flat"]):
        assert abs(cpu[0] - gpu[0]) <= 0.5 and abs(cpu[1] - gpu[1]) <= 0.5, (cpu, gpu)
        assert cpu[2:] == gpu[2:] == [30, 60]
        assert gpu[0] > flat + 3.0  # a real fit, far better than the image's mean colour


def test_gpu_fitter_renders_only_with_the_triton_backend(fits: dict) -> None:
    """Every render of the cuda fit (init, Adam steps, colour solves, refit, code search) went through Triton."""
    assert fits["cuda_calls"]["cpu"] == 0 and fits["cuda_calls"]["cuda"] > 30
    # the CPU fitter's Adam steps use the fused squared_error_grad, not rasterize_sum: only its init, colour
    # solves, refit and code search render (their counts come from the pinned effort row)
    assert fits["cpu_calls"]["cuda"] == 0 and fits["cpu_calls"]["cpu"] > 30
