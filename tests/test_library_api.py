"""The library API: the numpy data model and its torch views, write(GsiFile), quality 0..100 through Pillow, the
torch datasets and the webdataset handler."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import gscodec
from gscodec.datasets import GsiImageDataset, ParamsBatch, collate_params, find_gsi
from gscodec.presets import quality_settings
from gscodec.quantize import morton_encode
from gscodec.wds import OUTPUTS, gsi_handler

from .conftest import random_gaussians

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "spec" / "vectors"
VALID = [c["file"] for c in json.loads((VECTORS / "vectors.json").read_text())]
PHOTO = ROOT / "tests" / "data" / "coffee.png"


# --- the data model ---------------------------------------------------------------------------------------


def test_arrays_are_numpy_and_tensors_are_zero_copy_views() -> None:
    g = random_gaussians(20, 40, 30, seed=1)
    for a in (g.means, g.chol, g.colors):
        assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous
    t = g.tensors()
    assert [tuple(x.shape) for x in t] == [(20, 2), (20, 3), (20, 3)]
    assert all(x.dtype == torch.float32 and x.device.type == "cpu" for x in t)
    assert t.means.data_ptr() == g.means.ctypes.data and t.colors.data_ptr() == g.colors.ctypes.data
    t.colors[0, 0] = 7.0  # a view: the image sees it
    assert g.colors[0, 0] == 7.0
    assert g.tensors("cpu").chol.data_ptr() == g.chol.ctypes.data
    np.testing.assert_array_equal(g.params(), np.concatenate([g.means, g.chol, g.colors], 1))


def test_constructor_takes_tensors_lists_and_arrays_without_copying_float32() -> None:
    means = np.array([[1.0, 2.0]], dtype=np.float32)
    g = gscodec.GaussianImage(4, 4, means, [[1, 0, 1]], torch.tensor([[0.5, 0.5, 0.5]], requires_grad=True))
    assert g.means is means  # already C-contiguous float32: kept
    assert g.chol.tolist() == [[1.0, 0.0, 1.0]] and g.colors.dtype == np.float32
    empty = gscodec.GaussianImage(4, 4, torch.zeros(0, 2), np.zeros((0, 3)), np.zeros((0, 3), np.int64))
    assert empty.count == 0 and empty.colors.dtype == np.float32


@pytest.mark.parametrize("bad", [np.array([[1 + 1j, 2]]), [["a", "b"]], [[1.0, 2.0], [3.0]], np.ones((1, 2), bool),
                                 np.ones((1, 2), np.uint8)])
def test_constructor_refuses_what_is_not_real_numbers(bad: object) -> None:
    with pytest.raises(gscodec.InvalidGaussiansError, match="means"):
        gscodec.GaussianImage(4, 4, bad, [[1.0, 0.0, 1.0]], [[0.0, 0.0, 0.0]])


def test_permuted_covariance_and_scaled_are_numpy() -> None:
    g = random_gaussians(10, 16, 12, seed=2)
    order = np.arange(10)[::-1].copy()
    assert g.permuted(order).equal(g.permuted(torch.from_numpy(order)))
    np.testing.assert_array_equal(g.permuted(order).means, g.means[::-1])
    with pytest.raises(ValueError):
        g.permuted(np.arange(9))
    cov = g.covariance()
    assert cov.shape == (10, 2, 2) and cov.dtype == np.float32
    l = np.zeros((10, 2, 2))
    l[:, 0, 0], l[:, 1, 0], l[:, 1, 1] = g.chol[:, 0], g.chol[:, 1], g.chol[:, 2]
    np.testing.assert_allclose(cov, l @ l.transpose(0, 2, 1), rtol=1e-5)
    s = g.scaled(32, 36)
    np.testing.assert_array_equal(s.means, g.means * np.array([2, 3], np.float32))


def test_render_float_is_numpy_and_render_tensor_a_view() -> None:
    g = random_gaussians(30, 24, 16, seed=3)
    f = gscodec.render_float(g)
    assert isinstance(f, np.ndarray) and f.shape == (16, 24, 3) and f.dtype == np.float32
    t = gscodec.render_tensor(g)
    assert isinstance(t, torch.Tensor) and torch.equal(t, torch.from_numpy(f))
    with pytest.raises(ValueError, match="unknown backend"):
        gscodec.render(g, backend="opengl")


# --- write(GsiFile) ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALID)
def test_writing_a_read_file_keeps_everything(name: str, tmp_path: Path) -> None:
    f = gscodec.read(VECTORS / name)
    size = gscodec.write(f, tmp_path / "copy.gsi")
    again = gscodec.read(tmp_path / "copy.gsi")
    assert size == (tmp_path / "copy.gsi").stat().st_size
    assert again.metadata == f.metadata
    assert (again.header.mode, again.header.version) == (f.header.mode, f.header.version)
    # the same Gaussians, in the writer's Morton order where the file had another (unsorted-fractions-*)
    order = np.arange(f.header.count) if f.quantized is None else \
        np.argsort(morton_encode(f.quantized.ix, f.quantized.iy), kind="stable")
    assert again.gaussians.equal(f.gaussians.permuted(order))
    assert (name == "unsorted-fractions-quantized.gsi") == (not np.array_equal(order, np.arange(f.header.count)))
    assert gscodec.encode(again) == gscodec.encode(f)  # stable from here on


def test_write_of_a_file_from_the_encoder_is_byte_identical(tmp_path: Path) -> None:
    data = gscodec.encode(random_gaussians(200, 64, 48, seed=4), metadata={"source": "x.png", "psnr": "30.00"})
    f = gscodec.decode(data)
    assert f.quantized is not None and f.metadata == {"source": "x.png", "psnr": "30.00"}
    assert gscodec.encode(f) == data
    buf = io.BytesIO()
    gscodec.write(f, buf)
    assert buf.getvalue() == data


def test_decode_dequantizes_in_the_decoders_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """decode keeps the stored codes and still dequantizes with the payload's one numba pass (not numpy's)."""
    from gscodec.format import payload

    calls = []
    original = payload.dequantized
    monkeypatch.setattr(payload, "dequantized", lambda qg: calls.append(qg) or original(qg))
    for name in ("small-v2.gsi", "small-quantized.gsi"):
        f = gscodec.read(VECTORS / name)
        assert calls[-1] is f.quantized
        assert f.gaussians.equal(gscodec.dequantize(f.quantized))
    assert len(calls) == 2


def test_write_overrides_of_a_file(tmp_path: Path) -> None:
    f = gscodec.decode(gscodec.encode(random_gaussians(50, 32, 24, seed=5), metadata={"a": "1"}, version=1))
    assert gscodec.decode(gscodec.encode(f, metadata={})).metadata == {}
    assert gscodec.decode(gscodec.encode(f, metadata={"b": "2"})).metadata == {"b": "2"}
    as_float = gscodec.decode(gscodec.encode(f, mode="float32"))
    assert as_float.header.mode == gscodec.Mode.FLOAT32 and as_float.gaussians.equal(f.gaussians)
    assert as_float.metadata == {"a": "1"} and as_float.quantized is None
    finer = gscodec.Quantization(color_bits=9, chroma_bits=9)
    requantized = gscodec.decode(gscodec.encode(f, quantization=finer))
    assert requantized.gaussians.equal(gscodec.snap(f.gaussians, finer))
    assert gscodec.decode(gscodec.encode(f, version=2)).header.version == 2
    assert gscodec.decode(gscodec.encode(f)).header.version == 1  # kept
    with pytest.raises(TypeError, match="GsiFile"):
        gscodec.encode(np.zeros((3, 8)))  # type: ignore[arg-type]


# --- quality 0..100 through Pillow (the scale is gscodec.presets.quality_settings, tested with the encoder) ---


def test_pillow_save_takes_a_quality(tmp_path: Path) -> None:
    from PIL import Image

    gscodec.register_pillow()
    im = Image.open(PHOTO).convert("RGB").crop((0, 0, 64, 48))
    im.save(tmp_path / "q.gsi", quality=40, effort=1)
    assert gscodec.peek(tmp_path / "q.gsi").header.count == round(quality_settings(40).density * 64 * 48)
    assert (tmp_path / "q.gsi").read_bytes() == gscodec.encode_image(im, quality=40, effort=1)
    with pytest.raises(ValueError, match="0..100"):
        im.save(tmp_path / "bad.gsi", quality=40, points=100)


# --- datasets ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def splat_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("splats")
    (folder / "sub").mkdir()
    for i, (n, w, h) in enumerate([(30, 40, 30), (50, 32, 32), (10, 48, 24)]):
        path = folder / ("sub" if i == 2 else "") / f"f{i}.gsi"
        gscodec.write(random_gaussians(n, w, h, seed=10 + i), path)
    (folder / "notes.txt").write_text("not a splat")
    return folder


def test_dataset_of_pixels(splat_folder: Path) -> None:
    ds = GsiImageDataset(splat_folder)
    assert len(ds) == 3 and [p.name for p in ds.files] == ["f0.gsi", "f1.gsi", "f2.gsi"]
    x = ds[0]
    assert x.shape == (3, 30, 40) and x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    expected = gscodec.render(gscodec.read(ds.files[0]).gaussians)
    assert torch.equal((x.permute(1, 2, 0) * 255).round().to(torch.uint8), torch.from_numpy(expected))
    sized = GsiImageDataset(splat_folder, width=20, height=16, channels_last=True)
    batch = next(iter(torch.utils.data.DataLoader(sized, batch_size=3)))
    assert batch.shape == (3, 16, 20, 3)
    up = GsiImageDataset(splat_folder / "f1.gsi", scale=2.0)[0]
    assert up.shape == (3, 64, 64)
    assert torch.equal(GsiImageDataset([ds.files[1]], transform=lambda t: t * 0)[0], torch.zeros(3, 32, 32))


def test_dataset_of_parameters_and_their_collate(splat_folder: Path) -> None:
    ds = GsiImageDataset(str(splat_folder / "**" / "*.gsi"), output="params")
    assert [tuple(ds[i].shape) for i in range(3)] == [(30, 8), (50, 8), (10, 8)]
    np.testing.assert_array_equal(ds[1].numpy(), gscodec.read(ds.files[1]).gaussians.params())
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate_params)))
    assert isinstance(batch, ParamsBatch) and len(batch) == 3
    assert batch.params.shape == (3, 50, 8) and batch.counts.tolist() == [30, 50, 10]
    assert batch.mask.sum(1).tolist() == [30, 50, 10]
    assert torch.equal(batch.params[2, 10:], torch.tensor([0.0, 0, 1, 0, 1, 0, 0, 0]).expand(40, 8))
    with pytest.raises(ValueError):
        collate_params([])
    with pytest.raises(ValueError):
        collate_params([torch.zeros(3, 7)])


def test_dataset_errors(splat_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="output"):
        GsiImageDataset(splat_folder, output="latents")
    with pytest.raises(ValueError, match="pixels"):
        GsiImageDataset(splat_folder, output="params", width=10)
    with pytest.raises(ValueError, match="either"):
        GsiImageDataset(splat_folder, width=10, scale=2.0)
    with pytest.raises(FileNotFoundError, match="no .gsi"):
        GsiImageDataset(tmp_path)
    (tmp_path / "bad.gsi").write_bytes(b"GSI1 not really")
    with pytest.raises(gscodec.GsiError):
        GsiImageDataset(tmp_path)[0]
    assert find_gsi([splat_folder / "f0.gsi", splat_folder / "f1.gsi"])[1].name == "f1.gsi"


# --- the webdataset handler ------------------------------------------------------------------------------


def test_handler_contract_without_webdataset() -> None:
    data = (VECTORS / "small-v2.gsi").read_bytes()
    f = gscodec.decode(data)
    assert np.array_equal(gscodec.gsi_decoder(".gsi", data), gscodec.render(f.gaussians))
    assert np.array_equal(gscodec.gsi_decoder("gsi", data), gscodec.render(f.gaussians))
    assert gscodec.gsi_decoder(".x.GSI", data).shape == (f.header.height, f.header.width, 3)
    assert gscodec.gsi_decoder(".png", data) is None and gscodec.gsi_decoder(".cls", b"3") is None
    assert gscodec.gsi_decoder(".gsi", "already decoded") is None
    outputs = {o: gsi_handler(o)(".gsi", data) for o in OUTPUTS}
    assert isinstance(outputs["file"], gscodec.GsiFile) and outputs["gaussians"].equal(f.gaussians)
    np.testing.assert_array_equal(outputs["params"], f.gaussians.params())
    small = gsi_handler("pixels", width=24, height=16)(".gsi", data)
    assert small.shape == (16, 24, 3) and small.dtype == np.uint8
    with pytest.raises(gscodec.GsiError):
        gscodec.gsi_decoder(".gsi", data[:-1])
    for bad in ({"output": "latents"}, {"width": 0}, {"scale": -1.0}, {"width": 10, "scale": 2.0}):
        with pytest.raises(ValueError):
            gsi_handler(**bad)


def test_handler_in_a_webdataset_pipeline(tmp_path: Path) -> None:
    wds = pytest.importorskip("webdataset", reason="webdataset comes with the dev extra")
    shard = tmp_path / "shard-000.tar"
    names = ["small-v2", "small-quantized", "small-float16"]
    with tarfile.open(shard, "w") as tar:
        for i, name in enumerate(names):
            for ext, payload in (("gsi", (VECTORS / f"{name}.gsi").read_bytes()), ("cls", str(i).encode())):
                info = tarfile.TarInfo(f"{i:04d}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    samples = list(wds.WebDataset(str(shard), shardshuffle=False).decode(gscodec.gsi_decoder).to_tuple("gsi", "cls"))
    assert [int(c) for _, c in samples] == [0, 1, 2]
    for (pixels, _), name in zip(samples, names):
        assert np.array_equal(pixels, gscodec.render(gscodec.read(VECTORS / f"{name}.gsi").gaussians))
    params = list(wds.WebDataset(str(shard), shardshuffle=False).decode(gsi_handler("params")).to_tuple("gsi"))
    assert [p.shape[1] for (p,) in params] == [8, 8, 8]
