"""Cluster configuration and the core's tunables (all times in ticks)."""

from __future__ import annotations

import attrs

__all__ = [
    "CORRECT_RULES",
    "DEFAULT_CLIENTS_MAX",
    "DEFAULT_TIMING",
    "ClusterConfig",
    "Rules",
    "Timing",
    "TlsFiles",
]

DEFAULT_CLIENTS_MAX = 32
"""Client sessions a cluster keeps by default (``trio-replica format --clients-max``)."""


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, got {value}")


@attrs.frozen
class TlsFiles:
    """Where a member's TLS material is: PEM files (paths as given).

    ``ca`` is the cluster's certificate authority (every peer's certificate
    must be signed by it), ``certificate`` this member's certificate (its
    identity is a URI subject alternative name, :mod:`.tls`) and ``key``
    its private key. Read when a transport opens; never by the core.
    """

    ca: str
    certificate: str
    key: str


@attrs.frozen
class ClusterConfig:
    """Who is in the cluster. ``replica_count`` is 1, 3 or 5 (2f + 1, f
    failures tolerated); the primary of view v is replica ``v % replica_count``.
    ``cluster_id`` is a u128 carried by every frame so that clusters never mix."""

    cluster_id: int
    replica_count: int = attrs.field(validator=_positive)
    clients_max: int = attrs.field(default=DEFAULT_CLIENTS_MAX, validator=_positive)
    """Sessions kept in the client table before the oldest is evicted. The
    client table is replicated state: this must be equal on every replica
    (``trio-replica format --clients-max`` records it; replicas whose
    values differ refuse each other's connections). Set it to at least the
    number of clients submitting at once, or they evict each other's
    sessions (each eviction fails a submit with ``SessionEvictedError``)."""
    tls: TlsFiles | None = None
    """Mutual TLS for the TCP transport (None: plain TCP, an explicit choice
    of whoever runs the cluster; see ``docs/security.md``). The consensus
    core never reads it."""
    checkpoint_interval: int = attrs.field(default=4096, validator=_positive)
    """Every committed op that is a multiple of this is a checkpoint: every
    replica snapshots its state there, compares its state digest with its
    peers' and may compact its journal below it. It must be the same on every
    replica (it decides which ops are compared)."""
    machine_version: int | None = None
    """The state machine version a new cluster starts at: every replica
    switches its machine to it (``StateMachine.switch_version``) before op 1,
    so replicas that replay old ops with newer code apply them as this
    version did. Later versions are switched to by committed ops
    (``ClusterClient.switch_version``). None: each replica's own code
    version, so every replica must run the same code until the first switch."""

    @property
    def quorum(self) -> int:
        """Replication quorum q (commit) and view change quorum: a majority."""
        return self.replica_count // 2 + 1

    @property
    def nack_quorum(self) -> int:
        """n - q + 1 nacks prove an op was never committed: at most q - 1 acked it."""
        return self.replica_count - self.quorum + 1

    def primary(self, view: int) -> int:
        """The primary's index in ``view``."""
        return view % self.replica_count


@attrs.frozen
class Timing:
    """Timeouts and bounds of the core, in ticks and ops."""

    pipeline_max: int = attrs.field(default=8, validator=_positive)
    """Ops prepared but not yet committed, at most (then requests queue)."""
    request_queue_max: int = attrs.field(default=16, validator=_positive)
    """Requests waiting for room in the pipeline, at least (then dropped: the client
    retries); the bound is the larger of this and ``ClusterConfig.clients_max``,
    so every session can have its one request waiting."""
    hold_max: int = attrs.field(default=64, validator=_positive)
    """Prepares that arrived ahead of a gap and are held until the gap fills
    (at least ``repair_window``, or pipelined repair answers that arrive out
    of order are dropped and asked for again)."""
    heartbeat: int = attrs.field(default=5, validator=_positive)
    """The primary sends a commit heartbeat this often."""
    prepare_retry: int = attrs.field(default=8, validator=_positive)
    """The primary resends an unacknowledged prepare this often."""
    normal_timeout: int = attrs.field(default=30, validator=_positive)
    """A backup that heard nothing from its primary this long starts a view change."""
    abdicate_timeout: int = attrs.field(default=60, validator=_positive)
    """A primary whose oldest prepare got no quorum this long starts a view change."""
    view_change_timeout: int = attrs.field(default=40, validator=_positive)
    """A view change that did not finish this long moves on to the next view."""
    recovering_timeout: int = attrs.field(default=150, validator=_positive)
    """A restarted replica that got no start_view this long after it asked
    (no primary answers: the whole cluster restarted, or the primary is gone)
    starts a view change. Longer than a peer's reconnection backoff, so that
    a healthy primary's answer gets through first."""
    resend: int = attrs.field(default=10, validator=_positive)
    """View change messages and repair requests are resent this often."""
    repair_batch: int = attrs.field(default=512, validator=_positive)
    """Headers asked for per request_headers (96 bytes each: 512 make a 48 KiB
    answer, far below a TCP frame's limit)."""
    repair_window: int = attrs.field(default=64, validator=_positive)
    """Prepares asked for and not yet journaled, at most (pipelined repair):
    a replica behind asks for up to this many at once, spread over its peers,
    and asks for more every tick as they are journaled."""
    commit_persist_interval: int = attrs.field(default=1024, validator=_positive)
    """The durable view state is written again when ``commit_max`` moved this
    many ops past the durable one (besides view changes and checkpoints): a
    restart then starts at most about this far behind what it knew committed."""
    headers_max: int = attrs.field(default=4096, validator=_positive)
    """Headers of committed ops kept in memory below the commit point, to
    answer peers' header repair. A replica further behind than this needs
    state transfer (a checkpoint from a peer)."""
    transfer_chunk: int = attrs.field(default=256 * 1024, validator=_positive)
    """Bytes of a snapshot file asked for per chunk in a state transfer."""
    checkpoint_retain: int = attrs.field(default=4096, validator=_positive)
    """Ops below the newest durable checkpoint that the journal keeps, so a
    lagging peer can still be repaired from it. Older ones may be compacted
    away (whole segments); asked for them, the replica answers that they are
    below what it retains (``Retained``)."""


@attrs.frozen
class Rules:
    """The protocol's safety rules, all correct by default.

    Each flag turns one rule into a classic bug, as a real code path, so the
    simulator's tests can show that the checkers catch it. Never change these
    outside tests.
    """

    ack_after_durable: bool = True
    """A backup acks an op only after it is durable (else: at write)."""
    nack_quorum_truncates: bool = True
    """A new primary truncates only on n - q + 1 nacks (else: on any nack)."""
    canonical_by_log_view: bool = True
    """The canonical log comes from the highest log_view (else: the longest log)."""
    faulty_is_not_nack: bool = True
    """An op held but unreadable is not a nack (else: it is reported missing)."""
    lost_is_not_nack: bool = True
    """Ops cut from the journal at recovery because of damage are remembered
    (``RecoveredJournal.lost_to``) and never nacked (else: forgotten, as if
    never written)."""
    client_table_at_commit: bool = True
    """The client table changes at commit (else: at prepare)."""
    dedup_at_commit: bool = True
    """A duplicate request is a no-op at commit (else: applied again)."""
    view_durable_before_send: bool = True
    """Nothing advertising a view leaves before the view is durable (else: at once)."""
    restart_recovers: bool = True
    """A restarted replica asks for the current view's start_view and starts a
    view change only if none comes (else: the older restart table, which
    starts view changes at restarts and disturbs a healthy cluster)."""
    client_table_in_checkpoint: bool = True
    """A checkpoint holds the client table (else: an empty one, so a replica
    restarted from it forgets which requests it already applied)."""
    restart_journal_after_vouched: bool = True
    """After a state transfer the journal restarts only once the durable view
    state names the installed checkpoint (else: at once)."""
    rejoining_does_not_vote: bool = True
    """A replica that lost its data (``format --recover``) neither votes nor
    nacks until it has caught up (else: it acts as a freshly formatted one)."""


DEFAULT_TIMING = Timing()
"""The default timeouts and bounds."""

CORRECT_RULES = Rules()
"""Every rule as the protocol requires."""
