"""Example state machines built on the :mod:`trio_replica.stm` contract.

They are not part of the framework: the replica never imports them. The
``Counter`` is the smallest useful machine; ``MetadataStateMachine`` is the
demo's metadata store (streams, topics, partitions, users, groups) built on
the mux, and ``workload`` generates realistic command sequences for it.
"""

from __future__ import annotations

from .counter import Counter
from .metadata import MetadataStateMachine

__all__ = ["Counter", "MetadataStateMachine"]
