"""``benchmarks/gpu_check.py``: its dry run end to end (CPU, Triton interpreter, tiny sizes, the GPU machine's
missing packages blocked), and how it judges the targets from measurements."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
import gpu_wheels  # noqa: E402

pytestmark = pytest.mark.slow  # subprocesses and real fits: `-m "not slow"` skips them


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict, str]:
    pytest.importorskip("triton")
    out = tmp_path_factory.mktemp("report")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(out),
           "--work", str(out / "work"), "--photos", str(ROOT / "tests" / "data"), "--bundle", str(out / "none")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    report = json.loads((out / "gpu-report.json").read_text())
    return proc.returncode, report, (out / "gpu-report.md").read_text() + proc.stdout[-3000:] + proc.stderr[-3000:]


def test_dry_run_runs_every_section(dry_run: tuple[int, dict, str]) -> None:
    code, report, text = dry_run
    assert code == 0, text
    sections = report["sections"]
    assert list(sections) == [s.name for s in gpu_check.SECTIONS]
    assert all(s["status"] == "ok" for s in sections.values()), text
    assert report["install"]["status"] == "skipped" and "--no-index" in report["install"]["command"]

    env = sections["env"]["data"]["env"]
    for name in gpu_wheels.NOT_CARRIED:
        assert env["modules"][name].startswith("missing"), env["modules"]  # the check's paths do without them
    tests = sections["tests"]["data"]["tests"]
    assert not [t for t in tests if t["outcome"] == "failed"]
    assert sum(t["outcome"] == "passed" and "test_interp_" in t["test"] for t in tests) == 3

    fit = sections["fit"]["data"]
    assert fit["fit_probe"]["images"] == gpu_check.DRY.probe_images and fit["fit_main"]["images_per_s"] > 0
    assert len(fit["fit_cpu"]["per_image"]) == gpu_check.DRY.cpu_images
    steps = sections["steps"]["data"]["steps"]
    assert len(steps) == len(gpu_check.DRY.batches) * len(gpu_check.DRY.gaussians)
    assert all(r["images_per_s"] > 0 for r in steps)
    decode = sections["decode"]["data"]
    assert decode["decode"]["source"].startswith("files written") and decode["decode_batched"]["equals_per_file_render"]
    clip_rows = sections["clip"]["data"]["clip"]
    assert [r["config"] for r in clip_rows] == [c[0] for c in gpu_check.DRY.clip]
    assert all(r.get("images_per_s", 0) > 0 and r["loss"] == r["loss"] for r in clip_rows), clip_rows  # cells too

    assert set(report["targets"]) == set(gpu_check.TARGETS)
    assert all(t["verdict"].startswith("not judged") for t in report["targets"].values())
    assert "## Targets" in text and "## Batched fitter" in text and "## CLIP head training steps" in text


def _sections(images_per_s: float, psnr: float, diff: float, utils: tuple[float | None, ...]) -> dict:
    steps = [{"n": 400, "batch": 64, "images_per_s": 10.0, "util": 50.0},
             {"n": 400, "batch": 1024, "images_per_s": 90.0, "util": utils[0]},
             {"n": 900, "batch": 1024, "images_per_s": 70.0, "util": utils[1]},
             {"n": 900, "batch": 4096, "note": "OOM"}]
    main = {"batch": 2048, "images_per_s": images_per_s, "psnr_mean": psnr, "util": utils[2]}
    cpu = {"mean_diff": diff, "max_abs_diff": abs(diff) + 0.1, "images": 4}
    return {"env": {"data": {"env": {"cuda_problem": None}}}, "steps": {"data": {"steps": steps}},
            "fit": {"data": {"fit_probe": {**main, "batch": 256}, "fit_main": main, "fit_cpu": cpu}}}


@pytest.mark.parametrize(
    "case, verdicts",
    [
        ((320.0, 28.4, -0.2, (95.0, 93.0, 91.0)), ("pass", "pass", "pass")),
        ((280.0, 28.4, 0.31, (95.0, 90.0, 99.0)), ("fail", "fail", "fail")),
        ((500.0, 27.9, 0.0, (95.0, None, 99.0)), ("fail", "pass", "not measured")),
        ((500.0, 30.0, 0.0, (None, None, None)), ("pass", "pass", "not measured")),
    ],
)
def test_targets_are_judged_from_the_measurements(case: tuple, verdicts: tuple[str, str, str]) -> None:
    """Throughput needs both the rate and the PSNR; the PSNR gap is two-sided; utilization is judged on the best
    batch per Gaussian count and the fitter, and is not passed while any of those went unmeasured."""
    targets = gpu_check.judge(_sections(*case), dry=False)
    assert tuple(targets[k]["verdict"] for k in ("fit_throughput", "fit_psnr_match", "utilization")) == verdicts
    assert "steps N=400 batch 1024" in targets["utilization"]["measured"] or case[3] == (None, None, None)
    assert gpu_check.judge(_sections(*case), dry=True)["fit_throughput"]["verdict"].startswith("not judged")


def test_targets_without_measurements() -> None:
    targets = gpu_check.judge({"fit": {"status": "timed out after 200 s", "data": {}}}, dry=False)
    assert all(t["verdict"] == "not measured" for t in targets.values())
