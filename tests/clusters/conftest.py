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
* ``figures``: the fault tests' fixture (what each scenario measured, printed
  and repeated in the terminal summary).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import MySQLdb
import pytest

from tests.clusters.servers import GaleraCluster, ReplicationPair, galera_missing
from tests.faults import conftest as faults_conftest
from tests.faults.conftest import figures
from tests.faults.mariadb import DATABASE, PASSWORD, USER, Unavailable, find_programs

__all__ = ["app_connect", "figures"]


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
    try:
        cluster.start()
        cluster.provision()
    except (Unavailable, MySQLdb.Error) as exc:
        cluster.stop()
        pytest.skip(f"the Galera cluster could not start: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


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
    try:
        pair.start()
        pair.provision()
    except (Unavailable, MySQLdb.Error) as exc:
        pair.stop()
        pytest.skip(f"the replication pair could not start: {exc}\n{pair.log_tails()}")
    try:
        yield pair
    finally:
        pair.stop()


@pytest.fixture
def replication_pair(replication: ReplicationPair) -> Iterator[ReplicationPair]:
    """The pair as started: ``server1`` primary, ``server2`` replicating read-only, no application session."""
    replication.restore()
    yield replication
    replication.restore()
