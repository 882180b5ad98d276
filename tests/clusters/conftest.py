"""Fixtures for the cluster tests: a private Galera cluster and a primary/replica pair, on loopback.

* ``galera`` (session): a :class:`~tests.clusters.galera.GaleraCluster` of
  three nodes, started once (about 25 s, most of it the two state transfers),
  provisioned with the application database and user, always stopped at the
  end. Tests that use it skip, saying why, where ``galera-4``,
  ``mariadb-backup`` or ``mariadbd`` are missing or the cluster cannot start
  (with the tail of each node's error log).
* ``galera_cluster``: the same cluster, before and after each test: three
  nodes running and ``Synced``, no ``wsrep_desync``,
  ``wsrep_reject_queries=NONE``, default globals, no application session.
* ``replication`` (session) and ``replication_pair``: the same for a
  :class:`~tests.clusters.replication.ReplicationPair` (``server1`` primary,
  ``server2`` its read-only replica; rebuilt after a test that changed roles).
* ``galera_target`` and ``replication_target``: build
  :class:`~tests.faults.conftest.PoolTarget` aliases whose ``HOST`` lists
  the servers (in order, or as given); each pool is closed before the
  cluster is restored.
* ``figures``: the fault tests' fixture (what each scenario measured, printed
  and repeated in the terminal summary).
"""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.clusters.servers import GaleraCluster, ReplicationPair, galera_missing
from tests.faults import conftest as faults_conftest
from tests.faults.conftest import PoolTarget, figures
from tests.faults.mariadb import DATABASE, PASSWORD, USER, Unavailable, find_programs, running_or_skip

__all__ = ["TargetFactory", "app_connect", "figures"]

#: ``make(pool_options, hosts=None, **driver_options)``: a new alias over the cluster's servers.
TargetFactory = Callable[..., PoolTarget]

_aliases = itertools.count()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The figures, when the fault tests' conftest (which prints them otherwise) was not loaded."""
    if not config.pluginmanager.is_registered(sys.modules[faults_conftest.__name__]):
        faults_conftest.pytest_terminal_summary(terminalreporter)


def app_connect(node: Any, **kwargs: Any) -> Any:
    """A plain autocommit connection of the application user to *node*'s database."""
    return node.connect(user=USER, password=PASSWORD, db=DATABASE, **kwargs)


@pytest.fixture(scope="session")
def galera(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GaleraCluster]:
    """A three-node Galera cluster for the whole session (skips the test if it cannot run here)."""
    missing = galera_missing()
    if missing is not None:
        pytest.skip(f"no Galera cluster here: {missing}")
    cluster = GaleraCluster(tmp_path_factory.mktemp("galera"))
    with running_or_skip(cluster, "the Galera cluster"):
        yield cluster


@pytest.fixture
def galera_cluster(galera: GaleraCluster) -> Iterator[GaleraCluster]:
    """The cluster with three ``Synced`` nodes, nothing desynced or rejected and no application session."""
    galera.restore()
    yield galera
    galera.restore()


@pytest.fixture(scope="session")
def replication(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicationPair]:
    """A primary and its replica for the whole session (skips the test if they cannot run here)."""
    try:
        find_programs()
        pair = ReplicationPair(tmp_path_factory.mktemp("replication"))
    except Unavailable as exc:
        pytest.skip(f"no private MariaDB servers here: {exc}")
    with running_or_skip(pair, "the replication pair", lambda: "\n" + pair.log_tails()):
        yield pair


@pytest.fixture
def replication_pair(replication: ReplicationPair) -> Iterator[ReplicationPair]:
    """The pair as started: ``server1`` primary, ``server2`` replicating read-only, no application session."""
    replication.restore()
    yield replication
    replication.restore()


@pytest.fixture
def galera_target(galera_cluster: GaleraCluster, django_db_blocker: Any) -> Iterator[TargetFactory]:
    """``galera_target(pool_options, hosts=None, **driver_options)``: an alias over the nodes (all, in order)."""
    with _targets(galera_cluster.hosts, django_db_blocker) as make:
        yield make


@pytest.fixture
def replication_target(replication_pair: ReplicationPair, django_db_blocker: Any) -> Iterator[TargetFactory]:
    """``replication_target(pool_options, hosts=None, **driver_options)``: an alias over the pair
    (``server1,server2`` unless *hosts* says otherwise)."""
    with _targets(replication_pair.hosts, django_db_blocker) as make:
        yield make


@contextlib.contextmanager
def _targets(default_hosts: str, django_db_blocker: Any) -> Iterator[TargetFactory]:
    with faults_conftest.pool_targets("clusters", django_db_blocker) as add:

        def make(pool: dict[str, Any], hosts: str | None = None, **options: Any) -> PoolTarget:
            return add(faults_conftest.target_settings(hosts or default_hosts, "", pool, **options))

        yield make
