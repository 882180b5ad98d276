"""Review of the multi-host core: the last finding fixed (HOST-19b), on fake servers.

It failed on the code before the fix (a strict xfail then); the other fixed
findings live on as plain tests in ``test_hosts*.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.pool.fake_hosts import A, B, C, FakeHosts, HostDown, host_of, states


# HOST-19b: the last host up going down had its idle connections closed at once: a suspected
# host whose probe meets 1040 (the server full) lost every idle connection that works.
def test_with_no_other_host_up_a_failed_probe_keeps_the_idle_connections(hosted: Any, servers: FakeHosts) -> None:
    pool = hosted(max_size=4)
    servers.down.update({A, B, C})
    with pytest.raises(HostDown):
        pool.getconn()
    servers.bring_up(A)  # the replicas stay away, known down
    busy, idle = pool.getconn(), pool.getconn()
    assert states(pool) == {A: "up", B: "down", C: "down"}
    pool.putconn(idle)
    assert pool.connection_failed(busy, HostDown("(2013) lost connection: a client read timeout")) is True
    pool.putconn(busy, broken=True)
    servers.down.add(A)  # full: 1040 for new connections, open ones unharmed
    pool.probe_hosts()  # the suspected host's probe is refused
    assert states(pool)[A] != "up"
    assert not idle.closed, "the pool closed an idle connection to the only server that answers"
    assert host_of(pool.getconn()) == A
