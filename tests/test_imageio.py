"""Tests of gscodec.imageio: loading any Pillow image as 8-bit RGB, CLIP resizing, atomic PNG writes."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gscodec.imageio import ImageReadError, image_extensions, load_image, resize_for_clip, save_png

W, H = 32, 24


def _random(shape: tuple[int, ...], seed: int = 0, high: int = 256, dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, shape).astype(dtype)


def _png16(arr: np.ndarray) -> bytes:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA by channel count) with Sub-filtered rows."""
    h, w, c = arr.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    bpp = 2 * c
    rows = []
    for y in range(h):
        raw = np.frombuffer(arr[y].astype(">u2").tobytes(), np.uint8).astype(np.int32)
        diff = raw.copy()
        diff[bpp:] -= raw[:-bpp]
        rows.append(b"\x01" + (diff % 256).astype(np.uint8).tobytes())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))


def test_rgb_png_round_trip(tmp_path: Path) -> None:
    arr = _random((H, W, 3))
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    assert np.array_equal(out, arr)


def test_greyscale_becomes_rgb(tmp_path: Path) -> None:
    grey = _random((H, W), seed=1)
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (H, W, 3)
    for c in range(3):
        assert np.array_equal(out[..., c], grey)


def test_bilevel_image(tmp_path: Path) -> None:
    Image.new("1", (W, H), 1).save(tmp_path / "b.png")
    assert (load_image(tmp_path / "b.png") == 255).all()


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    arr = np.zeros((H, W, 4), np.uint8)
    arr[:, :8] = (255, 0, 0, 255)      # opaque red
    arr[:, 8:16] = (0, 0, 0, 0)        # fully transparent
    arr[:, 16:] = (0, 0, 0, 128)       # half-transparent black
    Image.fromarray(arr, mode="RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert (out[:, :8] == (255, 0, 0)).all()
    assert (out[:, 8:16] == 255).all()
    assert (out[:, 16:] == 127).all()  # 255 * (1 - 128/255) = 127


def test_grey_alpha_composited_on_white(tmp_path: Path) -> None:
    Image.new("LA", (W, H), (0, 0)).save(tmp_path / "la.png")
    assert (load_image(tmp_path / "la.png") == 255).all()


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_with_transparency(tmp_path: Path, suffix: str) -> None:
    im = Image.new("P", (W, H), 0)
    im.putpalette([0, 255, 0, 0, 0, 255])
    for x in range(W // 2):
        for y in range(H):
            im.putpixel((x, y), 1)
    im.save(tmp_path / f"p{suffix}", transparency=0)
    out = load_image(tmp_path / f"p{suffix}")
    assert (out[:, : W // 2] == (0, 0, 255)).all()   # opaque blue entry
    assert (out[:, W // 2:] == 255).all()            # transparent entry -> white


def test_colour_key_transparency(tmp_path: Path) -> None:
    arr = np.full((H, W, 3), 10, np.uint8)
    arr[0, 0] = (1, 2, 3)
    Image.fromarray(arr).save(tmp_path / "k.png", transparency=(10, 10, 10))
    out = load_image(tmp_path / "k.png")
    assert (out[0, 0] == (1, 2, 3)).all()
    assert (out[1:] == 255).all()


def test_16bit_greyscale_png_scaled(tmp_path: Path) -> None:
    values = _random((H, W), seed=2, high=65536, dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    out = load_image(tmp_path / "g16.png")
    expected = np.round(values / 257).astype(np.uint8)
    assert np.array_equal(out[..., 0], expected) and np.array_equal(out[..., 2], expected)


def test_16bit_greyscale_png_written_by_hand(tmp_path: Path) -> None:
    values = _random((H, W, 1), seed=3, high=65536, dtype=np.uint16)
    (tmp_path / "g.png").write_bytes(_png16(values))
    assert np.array_equal(load_image(tmp_path / "g.png")[..., 1], np.round(values[..., 0] / 257))


def test_16bit_rgb_png_scaled_with_rounding(tmp_path: Path) -> None:
    values = _random((H, W, 3), seed=4, high=65536, dtype=np.uint16)
    values[0, 0] = (2000, 32896, 65535)  # high byte alone would give 7 for 2000; correct is round(7.78) = 8
    (tmp_path / "c16.png").write_bytes(_png16(values))
    out = load_image(tmp_path / "c16.png")
    assert np.array_equal(out, np.round(values / 257).astype(np.uint8))
    assert tuple(out[0, 0]) == (8, 128, 255)


def test_16bit_rgba_png_on_white(tmp_path: Path) -> None:
    values = _random((H, W, 4), seed=5, high=65536, dtype=np.uint16)
    (tmp_path / "c16a.png").write_bytes(_png16(values))
    out = load_image(tmp_path / "c16a.png")
    alpha = values[..., 3:] / 65535
    expected = np.floor((values[..., :3] / 65535 * alpha + 1 - alpha) * 255 + 0.5)
    assert np.abs(out.astype(int) - expected).max() <= 1  # float32 compositing: ties may round either way
    assert (out.astype(int) == expected).mean() > 0.99


def test_32bit_integer_image_read_as_16bit(tmp_path: Path) -> None:
    Image.new("I", (W, H), 65535).save(tmp_path / "i.tif")
    assert (load_image(tmp_path / "i.tif") == 255).all()


def test_exif_orientation_applied(tmp_path: Path) -> None:
    arr = np.zeros((H, W, 3), np.uint8)
    arr[:, : W // 2] = (255, 0, 0)  # left half red
    arr[:, W // 2:] = (0, 0, 255)  # right half blue
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(tmp_path / "r.jpg")
    assert out.shape == (W, H, 3)  # width and height swapped
    top, bottom = out[: W // 2 - 2].astype(int), out[W // 2 + 2:].astype(int)
    assert top[..., 0].mean() > 200 and top[..., 2].mean() < 50      # left edge is now on top: red
    assert bottom[..., 2].mean() > 200 and bottom[..., 0].mean() < 50


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (W, H), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    out = load_image(tmp_path / "c.jpg")
    assert out.shape == (H, W, 3)
    r, g, b = out[H // 2, W // 2].astype(int)
    assert r > 200 and g < 50 and b < 50


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_raises_image_read_error(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"t.{fmt.lower()}"
    Image.fromarray(_random((64, 64, 3), seed=6)).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    assert str(path) in str(info.value) and "truncated" in str(info.value)
    assert isinstance(info.value, ValueError) and info.value.path == path


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_garbage_raises_image_read_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match="bad.png"):
        load_image(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="folder"):
        load_image(tmp_path)


def test_decompression_bomb_is_an_image_read_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(_random((H, W, 3))).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", W * H - 1)  # warning level: still an error here
    with pytest.raises(ImageReadError, match="too many pixels"):
        load_image(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", W * H // 4)  # Pillow's error level
    with pytest.raises(ImageReadError, match="too many pixels"):
        load_image(tmp_path / "big.png")


def test_resize_for_clip_shorter_side_then_centre_crop() -> None:
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, 15:25] = 255  # a white band in the middle survives the centre crop
    out = resize_for_clip(arr, 10)
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8
    assert out[:, 3:7].min() > 200 and out[:, 0].max() < 60 and out[:, -1].max() < 60
    assert resize_for_clip(_random((50, 30, 3)), 224).shape == (224, 224, 3)  # upscaling a tall image
    assert resize_for_clip(_random((16, 16, 3)), 16).shape == (16, 16, 3)
    with pytest.raises(ValueError):
        resize_for_clip(_random((4, 4)), 2)


def test_save_png_round_trip_and_atomic(tmp_path: Path) -> None:
    arr = _random((H, W, 3), seed=7)
    save_png(arr, tmp_path / "out.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), arr)
    save_png(arr[..., 0], tmp_path / "out.png")  # replaces the previous file
    assert Image.open(tmp_path / "out.png").mode == "L"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    with pytest.raises(ValueError):
        save_png(arr.astype(np.float32), tmp_path / "f.png")


def test_image_extensions() -> None:
    exts = image_extensions()
    assert {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".webp"} <= exts
    assert ".gsi" not in exts and ".txt" not in exts and ".pdf" not in exts


def _rotated_exif_photo(path: Path) -> None:
    """A JPEG stored landscape with EXIF orientation 6 (shown rotated 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_random((H, W, 3), 3)).save(path, "JPEG", exif=exif.tobytes(), quality=95)


def _alpha_photo(path: Path) -> None:
    rgba = _random((H, W, 4), 4)
    rgba[..., 3] = np.linspace(0, 255, W).astype(np.uint8)[None, :]
    Image.fromarray(rgba, "RGBA").save(path)


@pytest.mark.parametrize("make", [_rotated_exif_photo, _alpha_photo], ids=["exif-rotated", "alpha"])
def test_encoder_and_clip_data_see_the_same_pixels(tmp_path: Path, make, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import gscodec
    from gscodec import encoder
    from gscodec.clip.data import GsiDataset, load_teacher_image

    photo = tmp_path / ("photo.jpg" if make is _rotated_exif_photo else "photo.png")
    make(photo)
    fitted: list[np.ndarray] = []

    def capture(image: np.ndarray, *args, **kwargs):
        fitted.append(np.array(image))
        raise RuntimeError("captured")

    monkeypatch.setattr(encoder, "fit", capture)
    with pytest.raises(encoder.EncodeError):
        gscodec.encode_image(photo, points=4)
    [encoded] = fitted

    def as_array(im: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.array(im))

    gsi = tmp_path / "photo.gsi"
    gscodec.write(gscodec.GaussianImage(4, 4, torch.zeros(1, 2), torch.ones(1, 3), torch.zeros(1, 3)), gsi)
    sample = GsiDataset([gsi], images=[photo], image_transform=as_array, on_error="raise")[0]
    assert np.array_equal(sample["image"].numpy(), encoded)
    assert np.array_equal(load_teacher_image(photo.read_bytes(), as_array).numpy(), encoded)  # tar members
    with Image.open(photo) as im:
        plain = np.asarray(im.convert("RGB"))  # what the CLIP data read before: no rotation, alpha dropped
    assert plain.shape != encoded.shape or not np.array_equal(plain, encoded)
