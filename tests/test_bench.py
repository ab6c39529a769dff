"""Tests of the rate-distortion benchmark (``gscodec.bench``, ``gsi bench``): tiny images, short fits."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gscodec.bench import BenchError, bd_rate, make_codec, ms_ssim
from gscodec.bench.reference import GAUSSIANIMAGE_KODAK, KODAK_NAMES, is_image_set
from gscodec.metrics import MS_SSIM_MIN_SIDE
from gscodec.metrics import psnr_u8 as psnr
from gscodec.bench.runner import run
from gscodec.bench.store import FIELDS, PointStore
from gscodec.fit.effort import DEFAULT_EFFORT
from gscodec_cli.main import cli

W, H = 48, 40
QUALITIES = {"gsi": (0.02, 0.05), "jpeg": (20, 80), "webp": (20, 80), "avif": (20, 80)}
ITERATIONS = 8
SCHEMA = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")


def _photo(seed: int, width: int = W, height: int = H) -> np.ndarray:
    """A smooth gradient with a little noise: compressible, like a photo."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 200 / width, y * 200 / height, (x + y) * 100 / (width + height)], -1) + 30
    noise = np.random.default_rng(seed).normal(0, 8, (height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _codecs(names: tuple[str, ...] = ("gsi", "jpeg", "webp", "avif")) -> list:
    return [make_codec(n, QUALITIES[n], iterations=ITERATIONS) if n == "gsi" else make_codec(n, QUALITIES[n])
            for n in names]


def _rows(outdir: Path) -> list[dict[str, str]]:
    with open(outdir / "points.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i in range(2):
        Image.fromarray(_photo(i)).save(folder / f"im{i}.png")
    return folder


@pytest.fixture(scope="module")
def first_run(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    outdir = tmp_path_factory.mktemp("results")
    return outdir, run(photos, _codecs(), outdir)


# ----------------------------------------------------------------------------- BD-rate


def _curve(psnr_db: np.ndarray) -> np.ndarray:
    """A JPEG-like rate (bpp) as a smooth, convex function of PSNR (dB)."""
    return 0.05 * np.exp((psnr_db - 24) / 5 + 0.01 * (psnr_db - 24) ** 2)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_of_a_curve_with_10_percent_fewer_bits_is_minus_10(method: str) -> None:
    p_anchor = np.array([26.0, 28.5, 31.0, 33.0, 36.0])
    p_test = np.array([25.0, 27.0, 30.0, 32.5, 35.0, 37.0])  # sampled elsewhere on the same curve
    got = bd_rate(_curve(p_anchor), p_anchor, 0.9 * _curve(p_test), p_test, method=method)
    assert got == pytest.approx(-10.0, abs=0.1)
    assert bd_rate(_curve(p_anchor), p_anchor, 0.9 * _curve(p_anchor), p_anchor, method=method) == pytest.approx(-10)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_identical_curves_is_zero_and_order_does_not_matter(method: str) -> None:
    p = np.array([26.0, 29.0, 31.0, 34.0])
    r = _curve(p)
    assert bd_rate(r, p, r, p, method=method) == pytest.approx(0.0, abs=1e-12)
    assert bd_rate(r, p, r[::-1], p[::-1], method=method) == pytest.approx(0.0, abs=1e-12)


def test_bd_rate_matches_reference_implementations() -> None:
    # The example of the `bjontegaard` package (FAU-LMS); expected values from SciPy's PchipInterpolator
    # (scipy 1.17.1) and from the classic numpy.polyfit(…, 3) VCEG-M33 script.
    rate1, psnr1 = [9487.76, 4593.60, 2486.44, 1358.24], [40.037, 38.615, 36.845, 34.851]
    rate2, psnr2 = [9787.80, 4469.00, 2451.52, 1356.24], [40.121, 38.651, 36.970, 34.987]
    assert bd_rate(rate1, psnr1, rate2, psnr2) == pytest.approx(-4.417485350589045, abs=1e-9)
    assert bd_rate(rate1, psnr1, rate2, psnr2, method="cubic") == pytest.approx(-4.4204627061, abs=1e-6)


def test_bd_rate_no_overlap_and_bad_input() -> None:
    assert math.isnan(bd_rate([0.1, 0.2], [20, 22], [1, 2], [30, 32]))
    with pytest.raises(ValueError):
        bd_rate([0.1], [20], [0.1, 0.2], [20, 22])
    with pytest.raises(ValueError):
        bd_rate([0.1, 0.2], [20, 20], [0.1, 0.2], [20, 22])
    with pytest.raises(ValueError):
        bd_rate([0.1, -0.2], [20, 21], [0.1, 0.2], [20, 22])
    with pytest.raises(ValueError):
        bd_rate([0.1, 0.2], [20, 21], [0.1, 0.2], [20, 22], method="akima")


# ----------------------------------------------------------------------------- metrics


def test_ms_ssim_identical_is_one_and_degrades() -> None:
    img = _photo(0, 200, MS_SSIM_MIN_SIDE + 19)
    assert ms_ssim(img, img) == pytest.approx(1.0, abs=1e-6)
    noisy = np.clip(img + np.random.default_rng(1).normal(0, 10, img.shape), 0, 255).astype(np.uint8)
    assert 0.5 < ms_ssim(noisy, img) < 0.999


def test_ms_ssim_small_images_are_nan() -> None:
    img = _photo(0)
    assert math.isnan(ms_ssim(img, img))


def test_psnr_known_value() -> None:
    a = np.full((4, 4, 3), 100, np.uint8)
    b = a.copy()
    assert psnr(a, b) == math.inf
    b[0, 0, 0] = 110  # MSE = 100 / 48
    assert psnr(b, a) == pytest.approx(10 * math.log10(255**2 * 48 / 100))


# ----------------------------------------------------------------------------- codecs


@pytest.mark.parametrize("name", ["jpeg", "webp", "avif", pytest.param("gsi", marks=pytest.mark.slow)])
def test_codec_round_trip(name: str) -> None:
    codec = _codecs((name,))[0]
    img = _photo(3)
    low, high = (codec.encode(img, q) for q in codec.qualities)
    assert 0 < len(low) < len(high)
    out = codec.decode(high)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert psnr(out, img) > 15


def test_codec_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        make_codec("jpeg", (10.5,))
    with pytest.raises(ValueError):
        make_codec("gsi", (0.0,))
    with pytest.raises(ValueError):
        make_codec("png")


# ----------------------------------------------------------------------------- runner


def test_results_files_follow_the_compressai_schema(first_run: tuple[Path, object]) -> None:
    outdir, summary = first_run
    assert summary.measured == 2 * 8 and summary.reused == 0 and not summary.failures
    for name, qualities in QUALITIES.items():
        data = json.loads((outdir / f"{name}.json").read_text())
        assert set(data) == {"name", "description", "results"} and data["name"] == name
        assert isinstance(data["description"], str) and data["description"]
        assert set(data["results"]) == set(SCHEMA)
        for key in SCHEMA:
            assert len(data["results"][key]) == len(qualities)
        assert data["results"]["ms-ssim-rgb"] == [None, None]  # 48x40 is below MS-SSIM's minimum size
        bpp, db = data["results"]["bpp"], data["results"]["psnr-rgb"]
        assert all(isinstance(v, float) and v > 0 for v in bpp + db)
    assert (outdir / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (outdir / "rd.pdf").read_bytes()[:5] == b"%PDF-"
    svg = (outdir / "rd.svg").read_text()
    assert "<svg" in svg and "2 image(s) at native resolution" in svg  # the title, as text
    assert f"gsi effort {DEFAULT_EFFORT} ({ITERATIONS} steps, auto quantization)" in svg and "jpeg via Pillow" in svg


def test_averages_are_per_image_means_of_real_file_sizes(first_run: tuple[Path, object], photos: Path) -> None:
    outdir, _ = first_run
    rows = [r for r in _rows(outdir) if r["codec"] == "jpeg" and r["quality"] == "20"]
    assert len(rows) == 2
    for r in rows:
        data = make_codec("jpeg", (20,)).encode(np.asarray(Image.open(photos / r["image"]).convert("RGB")), 20)
        assert int(r["bytes"]) == len(data)
        assert float(r["bpp"]) == pytest.approx(8 * len(data) / (W * H), abs=1e-6)
    data = json.loads((outdir / "jpeg.json").read_text())
    assert data["results"]["bpp"][0] == pytest.approx(np.mean([float(r["bpp"]) for r in rows]), abs=1e-5)
    assert data["results"]["psnr-rgb"][0] == pytest.approx(np.mean([float(r["psnr"]) for r in rows]), abs=1e-3)


def test_resume_measures_only_missing_points(first_run: tuple[Path, object], photos: Path,
                                             tmp_path: Path) -> None:
    outdir = tmp_path / "results"
    shutil.copytree(first_run[0], outdir)
    again = run(photos, _codecs(), outdir)
    assert again.measured == 0 and again.reused == 16

    rows = _rows(outdir)
    gone = next(r for r in rows if r["codec"] == "gsi")
    kept = [r for r in rows if r is not gone]
    with open(outdir / "points.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
    measured: list[tuple[str, str, str]] = []
    third = run(photos, _codecs(), outdir, progress=lambda p: measured.append((p.image, p.codec, p.quality)))
    assert third.measured == 1 and measured == [(gone["image"], gone["codec"], gone["quality"])]
    assert len(_rows(outdir)) == 16


def test_a_row_cut_short_is_measured_again(first_run: tuple[Path, object], photos: Path, tmp_path: Path) -> None:
    outdir = tmp_path / "results"
    shutil.copytree(first_run[0], outdir)
    text = (outdir / "points.csv").read_text()
    (outdir / "points.csv").write_text(text[:-9])  # an interrupted append: the last row lacks its end
    assert len(PointStore(outdir / "points.csv").points) == 15
    assert run(photos, _codecs(), outdir).measured == 1


def test_other_settings_in_the_same_folder_are_refused(first_run: tuple[Path, object], photos: Path,
                                                       tmp_path: Path) -> None:
    outdir = tmp_path / "results"
    shutil.copytree(first_run[0], outdir)
    with pytest.raises(BenchError, match="other settings"):
        run(photos, [make_codec("gsi", QUALITIES["gsi"], iterations=ITERATIONS + 1)], outdir)


@pytest.mark.slow
def test_process_pool_gives_the_same_points(first_run: tuple[Path, object], photos: Path, tmp_path: Path) -> None:
    summary = run(photos, _codecs(("jpeg",)), tmp_path / "pool", jobs=2)
    assert summary.measured == 4 and not summary.failures
    serial = {(r["image"], r["quality"]): r["bytes"] for r in _rows(first_run[0]) if r["codec"] == "jpeg"}
    assert {(r["image"], r["quality"]): r["bytes"] for r in _rows(tmp_path / "pool")} == serial


def test_bd_rates_are_reported(first_run: tuple[Path, object]) -> None:
    _, summary = first_run
    pairs = {(b.test, b.anchor) for b in summary.bd_rates}
    assert {("gsi", "jpeg"), ("gsi", "webp"), ("gsi", "avif"), ("webp", "jpeg"), ("avif", "jpeg")} == pairs
    assert all(b.points == (2, 2) and b.sparse for b in summary.bd_rates)
    assert summary.references_elsewhere == [GAUSSIANIMAGE_KODAK]  # not Kodak: drawn, not compared


def test_kodak_is_recognised_by_its_24_names() -> None:
    names = [f"kodim{i:02d}.png" for i in range(1, 25)]
    assert is_image_set(names, KODAK_NAMES) and is_image_set([f"sub/{n.upper()}" for n in names], KODAK_NAMES)
    assert not is_image_set(names[:23], KODAK_NAMES)
    assert not is_image_set(names + ["kodim25.png"], KODAK_NAMES)
    assert not is_image_set(names[:23] + ["kodim01.jpg"], KODAK_NAMES)  # one image twice, one missing


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200"})


def test_cli_json_summary_and_table(runner: CliRunner, photos: Path, tmp_path: Path) -> None:
    args = ["bench", str(photos), "-o", str(tmp_path / "out"), "--codecs", "jpeg,gsi", "--gsi-density", "0.02,0.05",
            "--quality", "jpeg=20,80", "--iterations", str(ITERATIONS)]
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    summary = doc["summary"]
    assert summary["measured"] == 8 and summary["images"] == ["im0.png", "im1.png"]
    assert [r["quality"] for r in doc["records"] if r["codec"] == "gsi"] == ["0.02", "0.05"]
    assert all(r["status"] == "ok" and r["bpp"] > 0 for r in doc["records"]) and doc["ok"]
    assert {(b["test"], b["anchor"]) for b in summary["bd_rate"]} == {("gsi", "jpeg")}
    assert summary["bd_rate"][0]["points"] == [2, 2] and summary["image_set"] == photos.name
    assert "BD-rate of gsi against jpeg rests on 2 and 2 points (fewer than 4 per curve)" in result.stderr
    assert "measured on Kodak only" in result.stderr and "no BD-rate against it" in result.stderr
    again = runner.invoke(cli, args + ["--limit", "1"])
    assert again.exit_code == 0, again.output
    lines = again.stdout.splitlines()  # not a terminal: the RD points and the BD-rates as tab-separated lines
    assert lines[0].split("\t")[:3] == ["codec", "quality", "bpp"] and len(lines) == 1 + 4 + 1 + 1 + 1
    assert lines[6].split("\t")[:2] == ["test", "anchor"] and lines[7].split("\t")[:2] == ["gsi", "jpeg"]
    assert "measured 0, reused 4" in again.stderr


def test_cli_compares_with_the_published_curve_on_kodak_only(runner: CliRunner, tmp_path: Path) -> None:
    kodak = tmp_path / "kodak"
    kodak.mkdir()
    for i in range(1, 25):
        Image.fromarray(_photo(i, 24, 16)).save(kodak / f"kodim{i:02d}.png")
    args = ["bench", str(kodak), "-o", str(tmp_path / "out"), "--codecs", "gsi,jpeg", "--effort", "1", "--iterations", "4",
            "--gsi-density", "0.02,0.05,0.1,0.2", "--quality", "jpeg=10,30,60,90", "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = {(b["test"], b["anchor"]): b for b in json.loads(result.stdout)["summary"]["bd_rate"]}
    assert set(rows) == {("gsi", "jpeg"), ("gsi", "gaussianimage-published")}
    assert rows[("gsi", "gaussianimage-published")]["points"] == [4, 4]
    assert "warning" not in result.stderr and "no BD-rate" not in result.stderr  # 4 points a curve: no warning
    fewer = runner.invoke(cli, args + ["--limit", "23"])  # 23 of the 24: not Kodak any more
    assert fewer.exit_code == 0, fewer.output
    assert {(b["test"], b["anchor"]) for b in json.loads(fewer.stdout)["summary"]["bd_rate"]} == {("gsi", "jpeg")}
    assert "measured on Kodak only" in fewer.stderr and "no BD-rate against it" in fewer.stderr


def test_cli_help_and_usage_errors(runner: CliRunner, photos: Path, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["bench", "--help"])
    assert result.exit_code == 0 and "Examples" in result.output
    from gscodec.bench.codecs import DEFAULT_DENSITIES

    # the help states the library's default rate points (click wraps long lines)
    assert ",".join(format(d, "g") for d in DEFAULT_DENSITIES) in " ".join(result.output.split())
    out = str(tmp_path / "out")
    assert runner.invoke(cli, ["bench", str(photos), "-o", out, "--codecs", "png"]).exit_code == 2
    assert runner.invoke(cli, ["bench", str(photos), "-o", out, "--quality", "jpeg=a"]).exit_code == 2
    assert runner.invoke(cli, ["bench", str(photos), "-o", out, "--quality", "gsi=0.1"]).exit_code == 2
    assert runner.invoke(cli, ["bench", str(photos), "-o", out, "--quality", "jpeg=200"]).exit_code == 2


def test_cli_library_errors_become_click_exceptions(runner: CliRunner, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(cli, ["bench", str(empty), "-o", str(tmp_path / "out"), "--codecs", "jpeg"])
    assert result.exit_code == 1 and "no images" in result.output
