"""Sphinx configuration of the API reference: autodoc from the docstrings, built with warnings as errors.

Build (CI runs this in ``.ci/run``)::

    python -m sphinx -W --keep-going -q -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's sources, also where the package is not installed editable

import gscodec  # noqa: E402

project = "gscodec"
author = "gscodec developers"
copyright = "gscodec developers, Apache-2.0"
release = version = gscodec.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"  # hints in the parameter lists, not in long signatures
autodoc_class_signature = "separated"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # dataclass "Attributes:" as fields, not as second attribute entries
napoleon_use_rtype = False
default_role = "code"
nitpicky = False  # cross-references to numpy/torch/PIL have no inventory offline
suppress_warnings: list[str] = []
html_theme = "alabaster"
html_static_path: list[str] = []
exclude_patterns = ["_build"]
