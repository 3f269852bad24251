"""State machines: the user-facing contract, the mux, the example metadata
machine and the applier task."""

from __future__ import annotations

from .protocol import StateMachine

__all__ = ["StateMachine"]
