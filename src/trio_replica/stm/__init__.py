"""State machines: the user-facing contract (``protocol.py``), the mux that
combines several machines into one (``mux.py``), and the applier task
(``applier.py``), which lives here because it owns the one piece of state this
package is about: the user's state machine.

Example machines built on this contract live in :mod:`trio_replica.machines`.
"""

from __future__ import annotations

from .mux import MuxStateMachine, SubMachine
from .protocol import StateMachine

__all__ = ["MuxStateMachine", "StateMachine", "SubMachine"]
