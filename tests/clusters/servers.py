"""The private clusters the cluster tests start, all on loopback, each stopped by its fixture.

* :class:`~tests.clusters.galera.GaleraCluster`: three ``mariadbd`` nodes
  with the ``galera-4`` provider (SST by ``mariabackup``, IST on rejoin).
* :class:`~tests.clusters.replication.ReplicationPair`: a primary and its
  asynchronous GTID replica.

Both build on :class:`~tests.faults.mariadb.PrivateMariaDB` through
:class:`~tests.clusters.node.ClusterNode`.
"""

from __future__ import annotations

from tests.clusters.galera import GaleraCluster, GaleraNode
from tests.clusters.node import ClusterNode, galera_missing
from tests.clusters.replication import ReplicationPair

__all__ = ["ClusterNode", "GaleraCluster", "GaleraNode", "ReplicationPair", "galera_missing"]
