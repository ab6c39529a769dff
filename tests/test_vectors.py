"""The golden vectors in spec/vectors: header fields, exact parameters, decoded pixels, and invalid files."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gscodec
from gscodec.format import errors

VECTORS = Path(__file__).resolve().parents[1] / "spec" / "vectors"
CASES = json.loads((VECTORS / "vectors.json").read_text())
INVALID = json.loads((VECTORS / "invalid" / "expected.json").read_text())


def _floats(rows: list[list[str]]) -> np.ndarray:
    return np.array([[float.fromhex(v) for v in row] for row in rows], dtype=np.float64)


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_vector_decodes_exactly(case: dict) -> None:
    data = (VECTORS / case["file"]).read_bytes()
    assert len(data) == case["file_size"]
    f = gscodec.decode(data)
    h = f.header
    assert {"version": h.version, "mode": int(h.mode), "width": h.width, "height": h.height, "count": h.count,
            "metadata_length": h.metadata_length, "payload_length": h.payload_length} == case["header"]
    assert f.metadata == case["metadata"]
    for name in ("means", "chol", "colors"):
        got = getattr(f.gaussians, name).astype(np.float64)
        np.testing.assert_array_equal(got.ravel(), _floats(case[name]).ravel())
    expected = np.asarray(Image.open(VECTORS / case["decoded_png"]).convert("RGB"))
    assert hashlib.sha256(expected.tobytes()).hexdigest() == case["decoded_sha256"]
    # spec section 9: summation order and exp differ between builds, so any decoder is within 1 of the vector
    for backend in ("torch", "auto"):
        got = gscodec.render(f.gaussians, backend=backend).astype(int)
        assert np.abs(got - expected.astype(int)).max(initial=0) <= 1, backend
    for size in case["renders"]:
        expected = np.asarray(Image.open(VECTORS / size["png"]).convert("RGB"))
        assert expected.shape == (size["height"], size["width"], 3)
        assert hashlib.sha256(expected.tobytes()).hexdigest() == size["sha256"]
        got = gscodec.render(f.gaussians, size["width"], size["height"]).astype(int)
        assert np.abs(got - expected.astype(int)).max() <= 1, size["png"]


def test_every_check_of_the_spec_has_an_invalid_vector() -> None:
    spec = (VECTORS.parent / "gsi.md").read_text()
    checks = set(re.findall(r"^\| ([A-Z]+[0-9]+) \|", spec, flags=re.M))
    assert checks >= {"H1", "S5", "Q10"}
    assert {case["check"] for case in INVALID} == checks - {"H9"}  # H9 cannot fail in version 1


@pytest.mark.parametrize("case", INVALID, ids=[c["file"] for c in INVALID])
def test_invalid_vector_raises_its_error(case: dict) -> None:
    with pytest.raises(getattr(errors, case["error"])) as info:
        gscodec.decode((VECTORS / "invalid" / case["file"]).read_bytes())
    assert type(info.value).__name__ == case["error"]  # the class itself, not a subclass
