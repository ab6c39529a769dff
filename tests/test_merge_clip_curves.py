"""benchmarks/merge_clip_curves.py: learning-curve rows of several fidelity runs in one file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from merge_clip_curves import MergeError, main, merge  # noqa: E402


def _metrics(cos: float) -> dict:
    return {"cosine": cos, "retrieval@1": 0.5, "retrieval@1_g48": 0.6, "zero_shot_agreement": 0.7}


def _run(rows: list[tuple[int, int, float]], render: float = 0.99) -> dict:
    curve = [{"crops": c, "views": v, "items": c * v, "seconds": 60.0, "held": _metrics(cos), "train": _metrics(cos)}
             for c, v, cos in rows]
    return {"teachers": {"t": {"note": "n", "render_path": _metrics(render), "untrained": _metrics(0.1),
                               "curve": curve}}}


def test_rows_are_united_sorted_and_later_files_replace_earlier_rows():
    a = _run([(64, 1, 0.9), (2480, 4, 0.5)])
    b = _run([(1024, 1, 0.95)])
    c = _run([(2480, 4, 0.97)])
    out = merge([a, b, c], ["a", "b", "c"])
    curve = out["teachers"]["t"]["curve"]
    assert [(r["crops"], r["views"]) for r in curve] == [(64, 1), (1024, 1), (2480, 4)]
    assert [r["held"]["cosine"] for r in curve] == [0.9, 0.95, 0.97]
    assert [r["source"] for r in curve] == ["a", "b", "c"]
    assert out["merged_from"] == ["a", "b", "c"]


def test_runs_against_another_held_out_set_are_refused():
    with pytest.raises(MergeError, match="render-path"):
        merge([_run([(64, 1, 0.9)]), _run([(256, 1, 0.9)], render=0.5)], ["a", "b"])


def test_command_writes_json_and_plot(tmp_path, capsys):
    paths = []
    for i, run in enumerate([_run([(64, 1, 0.9)]), _run([(256, 1, 0.92)])]):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(run))
    out = tmp_path / "curve.json"
    assert main([*map(str, paths), "-o", str(out)]) == 0
    assert len(json.loads(out.read_text())["teachers"]["t"]["curve"]) == 2
    assert "wrote" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main([str(bad), "-o", str(out)]) == 1
