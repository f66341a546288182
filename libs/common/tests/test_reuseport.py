"""modelserve_common.reuseport: with the steering program attached, a SO_REUSEPORT group of real
listening sockets gets new connections in turn (real kernel, real sockets)."""

from __future__ import annotations

import socket

import pytest

from modelserve_common.reuseport import round_robin_available, steer_round_robin


def _listeners(n: int) -> tuple[list[socket.socket], int]:
    first = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    first.bind(("127.0.0.1", 0))
    first.listen(64)
    port = first.getsockname()[1]
    group = [first]
    for _ in range(n - 1):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", port))
        s.listen(64)
        group.append(s)
    return group, port


def _accepted(group: list[socket.socket]) -> list[int]:
    counts = []
    for s in group:
        s.settimeout(0.2)
        n = 0
        while True:
            try:
                conn, _ = s.accept()
            except TimeoutError:
                break
            conn.close()
            n += 1
        counts.append(n)
    return counts


@pytest.mark.skipif(not round_robin_available(), reason="no CAP_BPF here: the kernel's hash stays")
@pytest.mark.parametrize("n", [2, 3])
def test_connections_go_to_the_group_in_turn(n: int) -> None:
    group, port = _listeners(n)
    try:
        assert steer_round_robin(port, n) is None
        for _ in range(3):
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(2 * n)]
            assert _accepted(group) == [2] * n
            for c in clients:
                c.close()
    finally:
        for s in group:
            s.close()


def test_without_a_listener_it_says_why() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening
    why = steer_round_robin(port, 2)
    assert why is not None
    assert str(port) in why or "eBPF" in why or "Linux" in why


def test_one_worker_needs_nothing() -> None:
    assert steer_round_robin(1, 1) is None
