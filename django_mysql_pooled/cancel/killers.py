"""The process-wide killers: one :class:`~.killer.Killer` per server and credentials.

Built on first use by a cancellable evaluation (:func:`killer_for`; in a pool
with several hosts, one per host: :func:`host_killer`); a pool hook keeps the
used ones ready (:func:`killer_keeper`); after ``fork()`` each is told to drop
what it inherited.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django_mysql_pooled.addresses import split_label
from django_mysql_pooled.cancel.killer import COPIED, Killer, Login

__all__ = ["all_killers", "host_killer", "killer_for", "killer_keeper"]

_killers: dict[tuple[str, Login | None], Killer] = {}
_killers_lock = threading.Lock()


def killer_for(connection_params: Mapping[str, Any], login: Login | None = None) -> Killer:
    """The process-wide :class:`Killer` for these server and credentials (built on first use).

    :param login: with rotating credentials (``OPTIONS["pool"]["credentials"]``):
        returns the ``connect()`` arguments with the provider's user and
        password, called at every connect of the killer; equal for the same
        alias and provider (the pool's ``killer_login``).
    """
    params = {key: connection_params[key] for key in COPIED if key in connection_params}
    key = (repr(sorted(params.items())), login)
    with _killers_lock:
        killer = _killers.get(key)
        if killer is None:
            killer = _killers[key] = Killer(params, login)
        return killer


def all_killers() -> list[Killer]:
    """Every killer built in this process."""
    with _killers_lock:
        return list(_killers.values())


def host_killer(connection_params: Mapping[str, Any], address: tuple[str, int], login: Login | None = None) -> Killer:
    """The killer of one host of a pool with several hosts: *connection_params* (the alias's,
    which name its first host) with the ``(host, port)`` *address* a connection was opened to
    (:func:`django_mysql_pooled.identity.address_of`)."""
    host, port = address
    return killer_for({**connection_params, "host": host, "port": port}, login)


def killer_keeper(
    connection_params: Mapping[str, Any], login: Login | None = None, hosts: Sequence[str] = ()
) -> Callable[[Any], None]:
    """A pool hook (run by its maintenance thread, about once a second) keeping the killer of
    these parameters ready, once a cancellable evaluation has used it.

    :param hosts: the ``"host:port"`` labels of a pool with several hosts: each host's
        killer is kept ready once used, while the pool has that host up
        (``get_host_stats()``: a down host's killer is not reconnected every second).
    """
    killers = [(label, host_killer(connection_params, split_label(label), login)) for label in hosts]
    if not killers:
        killers = [("", killer_for(connection_params, login))]

    def keep_killer_ready(pool: Any) -> None:
        if getattr(pool, "closed", False):
            return
        states = pool.get_host_stats() if hosts else {}
        for label, killer in killers:
            if states.get(label, {}).get("state", "up") == "up":
                killer.keep_ready(if_used=True)

    return keep_killer_ready


def _after_fork_in_child() -> None:
    global _killers_lock
    _killers_lock = threading.Lock()
    for killer in _killers.values():
        killer._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
