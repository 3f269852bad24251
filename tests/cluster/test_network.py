"""SimNetwork: determinism and each fault kind."""

from __future__ import annotations

from trio_replica.testing.network import NetworkFaults, SimNetwork


def run(network: SimNetwork, packets: int, ticks: int) -> list[tuple[int, int, int, object]]:
    out = []
    for now in range(ticks):
        network.tick(now)
        if now < packets:
            network.send(0, 1, ("p", now), now)
            network.send(1, 0, ("q", now), now)
        out += [(now, p.source, p.destination, p.message) for p in network.deliver(now)]
    return out


def test_same_seed_same_deliveries() -> None:
    faults = NetworkFaults(delay_mean=3.0, loss=0.2, duplication=0.2, reorder=0.3)
    a = run(SimNetwork(5, faults, partitionable=2), 200, 300)
    b = run(SimNetwork(5, faults, partitionable=2), 200, 300)
    c = run(SimNetwork(6, faults, partitionable=2), 200, 300)
    assert a == b and a != c


def test_without_faults_everything_arrives_once_after_the_minimum_delay() -> None:
    network = SimNetwork(1, NetworkFaults(delay_min=2, delay_mean=0.0), partitionable=2)
    got = run(network, 50, 100)
    assert len(got) == 100
    assert all(now >= msg[1] + 2 for now, _, _, msg in got)  # type: ignore[index]


def test_loss_duplication_and_reordering_happen() -> None:
    network = SimNetwork(
        2, NetworkFaults(loss=0.3, duplication=0.3, reorder=0.5, reorder_delay=20), partitionable=2
    )
    got = run(network, 300, 400)
    sent = [m for _, s, _, m in got if s == 0]
    assert network.stats["lost"] > 0 and network.stats["duplicated"] > 0
    assert len(sent) != len(set(sent))  # duplicates
    order = [m[1] for m in sent]  # type: ignore[index]
    assert order != sorted(order)  # reordered


def test_partitions_cut_paths_and_heal() -> None:
    network = SimNetwork(
        3,
        NetworkFaults(
            partition_probability=1.0, unpartition_probability=0.0, partition_stability=1
        ),
        partitionable=3,
    )
    network.tick(5)
    assert network.partitioned
    network.send(0, 1, "x", 5)
    network.send(1, 0, "y", 5)
    network.send(0, 2, "z", 5)
    network.send(2, 0, "w", 5)
    network.send(1, 2, "v", 5)
    delivered = {p.message for p in network.deliver(100)}
    assert len(delivered) < 5  # some path is cut
    network.heal()
    assert not network.partitioned
    network.send(0, 1, "after", 101)
    assert [p.message for p in network.deliver(200)] == ["after"]


def test_asymmetric_partition_cuts_one_direction_only() -> None:
    for seed in range(20):
        network = SimNetwork(
            seed,
            NetworkFaults(partition_probability=1.0, asymmetric=1.0, partition_stability=1),
            partitionable=2,
        )
        network.tick(5)
        network.send(0, 1, "a", 5)
        network.send(1, 0, "b", 5)
        assert len(network.deliver(100)) == 1


def test_clogged_path_delays_but_delivers() -> None:
    network = SimNetwork(4, NetworkFaults(clog_probability=1.0, clog_duration=50), partitionable=2)
    network.tick(0)
    network.send(0, 1, "a", 0)
    network.send(1, 0, "b", 0)
    early = [p.message for p in network.deliver(10)]
    assert len(early) == 1  # the other direction is clogged
    assert {p.message for p in network.deliver(60)} == {"a", "b"} - set(early)


def test_path_capacity_drops_the_overflow() -> None:
    network = SimNetwork(5, NetworkFaults(path_capacity=3), partitionable=2)
    for i in range(10):
        network.send(0, 1, i, 0)
    assert len(network.deliver(50)) == 3


def test_filter_by_message_kind() -> None:
    class Prepare:
        pass

    class Commit:
        pass

    network = SimNetwork(
        6,
        NetworkFaults(drop_kinds=frozenset({"Prepare"}), drop_kind_probability=1.0),
        partitionable=2,
    )
    for _ in range(10):
        network.send(0, 1, Prepare(), 0)
        network.send(0, 1, Commit(), 0)
    kinds = {type(p.message).__name__ for p in network.deliver(50)}
    assert kinds == {"Commit"} and network.stats["filtered"] == 10
