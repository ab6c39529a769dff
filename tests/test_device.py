"""The device switch of ``gsi encode``/``view``/``classify``, GPU batch sizing and the streaming encoder on the CPU."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from rich.console import Console

import gscodec
from gscodec.fit import placement as fit_device_mod
from gscodec.fit.placement import RESERVE, SAFETY, choose_batch_size, fit_bytes_per_image, fit_device
from gscodec.fit.stream import BackgroundWriter, ImageFiles, Loaded, SizeBatcher, stream_images
from gscodec_cli.encoding import Settings
from gscodec_cli.gpu_encoding import run_streaming
from gscodec_cli.inputs import discover
from gscodec_cli.main import cli

DATA = Path(__file__).parent / "data"


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _image(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3)).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


# ----------------------------------------------------------------------------- the switch


@pytest.mark.parametrize("command", ["encode", "view", "classify"])
def test_device_cuda_without_cuda_is_a_clear_error(command: str, tmp_path: Path, no_cuda: None) -> None:
    """``--device cuda`` where CUDA is missing: exit 1, one message naming what is missing, no output written."""
    png = _image(tmp_path / "a.png", (16, 12))
    gsi = tmp_path / "a.gsi"
    gscodec.write(gscodec.GaussianImage(4, 4, torch.full((1, 2), 2.0), torch.ones(1, 3), torch.ones(1, 3)), gsi)
    args = {
        "encode": ["encode", str(png), "-o", str(tmp_path / "out"), "--points", "4", "--iterations", "2"],
        "view": ["view", str(gsi), "-o", str(tmp_path / "v.png")],
        "classify": ["classify", str(gsi), "--rgb", "--labels", "a,b"],
    }[command]
    result = CliRunner().invoke(cli, [*args, "--device", "cuda"])
    assert result.exit_code == 1, result.output
    assert "--device cuda" in result.output and "no CUDA device is available" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "v.png").exists()


def test_device_unknown_name_is_a_usage_error(tmp_path: Path) -> None:
    png = _image(tmp_path / "a.png", (16, 12))
    result = CliRunner().invoke(cli, ["encode", str(png), "--device", "tpu"])
    assert result.exit_code == 2 and "unknown device 'tpu'" in result.output


def test_device_auto_and_cpu_encode_and_view_on_cpu(tmp_path: Path, no_cuda: None) -> None:
    """``auto`` falls back to the CPU without CUDA and gives the same file as ``cpu``."""
    png = _image(tmp_path / "a.png", (16, 12))
    outs = {}
    for device in ("auto", "cpu"):
        out = tmp_path / device
        result = CliRunner().invoke(cli, ["encode", str(png), "-o", f"{out}/", "--points", "6", "--iterations", "5",
                                          "--device", device])
        assert result.exit_code == 0, result.output
        outs[device] = (out / "a.gsi").read_bytes()
        view = CliRunner().invoke(cli, ["view", str(out / "a.gsi"), "-o", str(tmp_path / f"{device}.png"),
                                        "--device", device])
        assert view.exit_code == 0, view.output
    assert gscodec.read(tmp_path / "auto" / "a.gsi").gaussians.equal(gscodec.read(tmp_path / "cpu" / "a.gsi").gaussians)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "auto.png")), np.asarray(Image.open(tmp_path / "cpu.png")))


def test_fit_device_follows_the_backend(no_cuda: None) -> None:
    assert fit_device("cpu") == fit_device("torch") == torch.device("cpu")
    assert fit_device("cuda") == torch.device("cpu")  # no GPU: CPU tensors (the Triton interpreter runs them)


# ----------------------------------------------------------------------------- batch sizing


def test_batch_size_from_free_memory() -> None:
    per = fit_bytes_per_image(224, 224, 900)
    assert 224 * 224 * 3 * 4 < per < 64 * 2**20  # more than the target itself, far less than a dense render
    assert fit_bytes_per_image(448, 448, 3600) > 3.5 * per  # four times the pixels and Gaussians
    assert fit_bytes_per_image(224, 224, 3136) > per
    for k in (1, 7, 300):
        free = RESERVE + int(np.ceil(k * per / SAFETY)) + 1
        assert choose_batch_size(224, 224, 900, free_bytes=free) == k
        assert choose_batch_size(224, 224, 900, free_bytes=free - per) == max(1, k - 1)
    assert choose_batch_size(224, 224, 900, free_bytes=0) == 1  # always try one image
    assert choose_batch_size(224, 224, 900, free_bytes=80 * 2**30, limit=16) == 16
    with pytest.raises(ValueError):
        fit_bytes_per_image(0, 10, 5)


def test_batch_size_measures_free_gpu_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    per = fit_bytes_per_image(64, 64, 100)
    free = RESERVE + int(np.ceil(5 * per / SAFETY)) + 1
    monkeypatch.setattr(fit_device_mod, "free_gpu_bytes", lambda device=None: free)
    assert choose_batch_size(64, 64, 100) == 5


# ----------------------------------------------------------------------------- streaming


def test_stream_decodes_in_order_in_workers_and_reports_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    paths = [DATA / "chelsea.png", bad, DATA / "coffee.png", tmp_path / "missing.png"]
    items = list(stream_images(paths, resize=24, workers=2, prefetch=1))
    assert [it.index for it in items] == [0, 1, 2, 3]
    assert items[0].image.shape == items[2].image.shape == (24, 24, 3) and items[0].image.dtype == np.uint8
    assert items[1].image is None and items[1].error and items[3].image is None and items[3].error
    direct = ImageFiles(paths, resize=24)[0]
    assert np.array_equal(direct.image, items[0].image)


def test_size_batcher_groups_by_size() -> None:
    def item(i: int, h: int, w: int) -> Loaded:
        return Loaded(i, np.zeros((h, w, 3), np.uint8), None, 0.0)

    batcher = SizeBatcher(lambda h, w: 2 if h == 8 else 3, max_pending=4)
    assert batcher.add(item(0, 8, 8)) == []
    assert batcher.add(item(1, 9, 8)) == []
    ready = batcher.add(item(2, 8, 8))
    assert [[it.index for it in b] for b in ready] == [[0, 2]]
    assert batcher.add(item(3, 5, 5)) == [] and batcher.add(item(4, 9, 8)) == [] and batcher.add(item(5, 6, 6)) == []
    ready = batcher.add(item(6, 7, 7))  # five waiting > 4: the largest group goes early
    assert [[it.index for it in b] for b in ready] == [[1, 4]]
    assert sorted(it.index for b in batcher.flush() for it in b) == [3, 5, 6]
    with pytest.raises(ValueError):
        batcher.add(Loaded(7, None, "broken", 0.0))


def test_background_writer(tmp_path: Path) -> None:
    with BackgroundWriter(max_pending=2) as writer:
        for i in range(5):
            writer.submit(i, tmp_path / f"{i}.bin", bytes([i]) * (i + 1))
        writer.submit("bad", tmp_path / "no" / "such" / "dir.bin", b"x")
    done = writer.close()
    assert sorted(str(w.key) for w in done) == ["0", "1", "2", "3", "4", "bad"]
    assert all((tmp_path / f"{i}.bin").read_bytes() == bytes([i]) * (i + 1) for i in range(5))
    assert next(w for w in done if w.key == "bad").error is not None
    with pytest.raises(RuntimeError):
        writer.submit(9, tmp_path / "9.bin", b"")


def test_streaming_encoder_on_cpu(tmp_path: Path) -> None:
    """The GPU encode path with the CPU fitter: batches by size, writes behind, reports failures, skips existing."""
    src = tmp_path / "in"
    src.mkdir()
    for i, size in enumerate([(20, 14), (20, 14), (12, 12), (20, 14)]):
        _image(src / f"{i}.png", size, seed=i)
    (src / "broken.png").write_bytes(b"\x89PNG broken")
    jobs = discover([str(src)], tmp_path / "out").jobs
    settings = Settings(points=6, iterations=4)
    per = fit_bytes_per_image(14, 20, 6)
    free = RESERVE + int(np.ceil(2 * per / SAFETY)) + 1  # two images per batch
    console = Console(file=io.StringIO())
    records = run_streaming(jobs, settings, console, torch.device("cpu"), loaders=1, free_bytes=free)
    by_name = {Path(r.input).name: r for r in records}
    assert by_name["broken.png"].status == "failed" and by_name["broken.png"].error
    for name in ("0.png", "1.png", "2.png", "3.png"):
        r = by_name[name]
        assert r.status == "encoded", r
        g = gscodec.read(r.output)
        assert g.gaussians.count == 6 and (g.gaussians.width, g.gaussians.height) == (r.width, r.height)
        assert g.metadata["source"] == name and r.bytes == Path(r.output).stat().st_size
    again = run_streaming(jobs, settings, console, torch.device("cpu"), loaders=0, free_bytes=free)
    assert [r.status for r in again if Path(r.input).name != "broken.png"] == ["skipped"] * 4
    with pytest.raises(ValueError, match="free_bytes"):
        run_streaming(jobs, settings, console, torch.device("cpu"))


@pytest.mark.slow
def test_imports_load_no_gpu_code() -> None:
    """Importing the fitter, the streaming encoder and the CLI loads neither triton, gsplat nor CUDA."""
    code = ("import json, sys, torch, gscodec, gscodec.fit, gscodec.fit.placement, gscodec.fit.stream, gscodec.render, "
            "gscodec_cli.main, gscodec_cli.gpu_encoding\n"
            "print(json.dumps([sorted({'triton', 'gsplat', 'gscodec.raster.triton.kernels'} & set(sys.modules)), "
            "torch.cuda.is_initialized()]))")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [[], False]
