"""Viewstamped Replication: the sans-IO consensus core and its values.

* :class:`Consensus` (``core``): one replica's protocol state, stepped with
  events, returning actions; no I/O, no Trio.
* :func:`open_cluster_replica` and :func:`open_cluster_client` (``replica``,
  ``client``): a cluster member and a client, run in-process over a
  :class:`Transport` (``tasks`` holds the replica's Trio tasks); over TCP
  with :func:`open_tcp_replica_transport` and :func:`open_tcp_client_transport`
  (``tcp``, messages encoded by ``tcp_codec``), with mutual TLS from
  ``tls`` (test certificates from ``certs``, which needs ``cryptography``).
* Checkpoints (``checkpoint``: what one holds, its state digest;
  ``checkpoint_store``: where a replica keeps them).
* Messages (``messages``), the prepare header (``header``), the durable view
  state (``view_state``), the client table (``client_table``), the restart
  decision table (``restart``) and the view change's choice of log
  (``view_change``).
"""

from __future__ import annotations

from .checkpoint import Checkpoint, StateDivergenceError, state_digest
from .checkpoint_store import CheckpointMismatchError, CheckpointMissingError
from .client import ClusterClient, SessionEvictedError, open_cluster_client
from .client_table import ClientTable, CommitKind, CommitOutcome, Session
from .config import ClusterConfig, Rules, Timing, TlsFiles
from .core import Consensus, RecoveredJournal, ReplicaStatus
from .errors import ClusterError, ProtocolInvariantError
from .header import ROOT, Operation, PrepareHeader, make_header
from .replica import ClusterReplica, ClusterReplicaStatus, open_cluster_replica
from .restart import RestartDecision, Status, restart_decision
from .storage import ClusterIdentityError
from .tcp import (
    AddressError,
    FrameError,
    open_tcp_client_transport,
    open_tcp_replica_transport,
    parse_address,
)
from .transport import Endpoint, Transport, client_address
from .view_change import ChosenLog, choose_log
from .view_state import ViewState, decode_view_state, encode_view_state

__all__ = [
    "ROOT",
    "Checkpoint",
    "CheckpointMismatchError",
    "CheckpointMissingError",
    "StateDivergenceError",
    "state_digest",
    "AddressError",
    "FrameError",
    "open_tcp_client_transport",
    "open_tcp_replica_transport",
    "parse_address",
    "ChosenLog",
    "ClientTable",
    "ClusterClient",
    "ClusterConfig",
    "ClusterIdentityError",
    "ClusterReplica",
    "ClusterReplicaStatus",
    "Endpoint",
    "SessionEvictedError",
    "Transport",
    "client_address",
    "open_cluster_client",
    "open_cluster_replica",
    "ClusterError",
    "CommitKind",
    "CommitOutcome",
    "Consensus",
    "Operation",
    "PrepareHeader",
    "ProtocolInvariantError",
    "RecoveredJournal",
    "ReplicaStatus",
    "RestartDecision",
    "Rules",
    "Session",
    "Status",
    "Timing",
    "TlsFiles",
    "ViewState",
    "choose_log",
    "decode_view_state",
    "encode_view_state",
    "make_header",
    "restart_decision",
]
