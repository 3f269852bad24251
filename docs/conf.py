"""Sphinx configuration of the trio-replica documentation.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html``
(CI does, with warnings as errors). The guides are the Markdown files of
this directory (read by MyST); the API reference is generated from the
docstrings by autodoc.
"""

from __future__ import annotations

import trio_replica

project = "trio-replica"
author = "trio-replica developers"
copyright = "2026, trio-replica developers"
release = trio_replica.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Signatures name attrs-generated and typing objects Sphinx cannot resolve
# without the network (no intersphinx in CI); the reference stays readable.
nitpicky = False

html_theme = "alabaster"
html_title = f"trio-replica {release}"
