"""State machines: the user-facing contract, the mux, the example metadata
machine and the applier task."""

from __future__ import annotations

from .counter import Counter
from .metadata import MetadataStateMachine
from .mux import MuxStateMachine, SubMachine
from .protocol import StateMachine

__all__ = ["Counter", "MetadataStateMachine", "MuxStateMachine", "StateMachine", "SubMachine"]
