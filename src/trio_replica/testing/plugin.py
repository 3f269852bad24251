"""pytest plugin for trio-replica (registered through the ``pytest11`` entry point)."""

from __future__ import annotations
