"""``manage.py poolstats``: the pools of every live process, and the server's view.

Reads the snapshots the pools publish (see :mod:`django_mysql_pooled.monitoring.publisher`);
this command opens no pool of its own. The server's view comes from one plain,
unpooled connection per database.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Mapping
from typing import Any

import MySQLdb
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from django_mysql_pooled.addresses import split_label
from django_mysql_pooled.config import parse_pool_config
from django_mysql_pooled.monitoring.publisher import stats_dir
from django_mysql_pooled.monitoring.snapshots import ScanResult, query_server, read_snapshots
from django_mysql_pooled.pool import stats

#: Table columns: (heading, stats key).
COLUMNS = (
    ("SIZE", stats.POOL_SIZE),
    ("IN USE", stats.CONNECTIONS_IN_USE),
    ("IDLE", stats.POOL_AVAILABLE),
    ("WAITING", stats.REQUESTS_WAITING),
    ("MAX", stats.POOL_MAX),
    ("REQUESTS", stats.REQUESTS_NUM),
    ("WAIT MS", stats.REQUESTS_WAIT_MS),
    ("TIMEOUTS", stats.REQUESTS_TIMEOUTS),
    ("OPENED", stats.CONNECTIONS_NUM),
    ("LOST", stats.CONNECTIONS_LOST),
    ("LEAKS", stats.LEAKS_DETECTED),
)
#: The per-server table's number columns (several hosts; see pool/hosts.py): (heading, key).
HOST_COLUMNS = (
    ("SIZE", stats.POOL_SIZE),
    ("IN USE", stats.CONNECTIONS_IN_USE),
    ("IDLE", stats.POOL_AVAILABLE),
    ("ERRORS", stats.CONNECTIONS_ERRORS),
    ("MARKED DOWN", stats.HOST_MARKED_DOWN),
    ("FAILOVERS", stats.FAILOVERS),
)
#: Characters of a down host's reason shown in the table (the JSON has all of it).
REASON_WIDTH = 60


def total(snapshots: list[dict[str, Any]]) -> dict[str, int]:
    """Sum the stats of *snapshots* (the longest wait is the maximum)."""
    result: dict[str, int] = {}
    for snapshot in snapshots:
        for key, value in snapshot["stats"].items():
            if key == stats.REQUESTS_LONGEST_WAIT_MS:
                result[key] = max(result.get(key, 0), value)
            else:
                result[key] = result.get(key, 0) + value
    return result


def limit_warnings(alias: str, combined: int, server: Mapping[str, Any], where: str = "") -> list[str]:
    """Warn when the live processes' combined ``max_size`` can exceed the server's limits.

    :param where: the server's ``"host:port"`` when the alias has several (each gets the whole
        ``max_size`` when the others are down).
    """
    warnings = []
    name = f"database {alias!r} at {where}" if where else f"database {alias!r}"
    limit = server.get("max_connections")
    if isinstance(limit, int) and combined > limit:
        warnings.append(
            f"{name}: the live processes' combined max_size ({combined}) can exceed the "
            f"server's max_connections ({limit}); lower max_size or raise max_connections."
        )
    user_limit = server.get("max_user_connections")
    if isinstance(user_limit, int) and 0 < user_limit < combined:
        warnings.append(
            f"{name}: the live processes' combined max_size ({combined}) can exceed "
            f"max_user_connections ({user_limit})."
        )
    return warnings


class Command(BaseCommand):
    help = (
        "Show the connection pool statistics of every live process (one row per process and a "
        "total) and the server's view: max_connections, Threads_connected, this user's connections."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            choices=tuple(connections),
            help="Only this database alias. Defaults to every alias with a pool or a snapshot.",
        )
        output = parser.add_mutually_exclusive_group()
        output.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
        output.add_argument("--prometheus", action="store_true", help="Print the Prometheus text exposition format.")
        parser.add_argument(
            "--watch", type=float, metavar="SECONDS", help="Print again every SECONDS until interrupted."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        watch = options["watch"]
        if watch is not None and watch <= 0:
            raise CommandError(f"--watch must be a number of seconds > 0, got {watch}.")
        if options["prometheus"]:
            self._check_prometheus()
        try:
            while True:
                self._report(options)
                if watch is None:
                    return
                self.stdout.flush()
                time.sleep(watch)
        except KeyboardInterrupt:
            return

    def _check_prometheus(self) -> None:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:  # pragma: no cover - installed with the test extra
            raise CommandError(
                "--prometheus needs prometheus_client: pip install 'django-mysql-pooled[prometheus]'."
            ) from None

    def _report(self, options: Mapping[str, Any]) -> None:
        scan = read_snapshots()
        for message in scan.warnings:
            self.stderr.write(self.style.WARNING(f"Warning: {message}"))
        report = self._collect(scan, options["database"], server=not options["prometheus"])
        if options["prometheus"]:
            self._print_prometheus(scan, options["database"])
        elif options["json"]:
            self.stdout.write(json.dumps(report, indent=2, sort_keys=True))
        else:
            self._print_table(report)

    def _aliases(self, scan: ScanResult, only: str | None) -> list[str]:
        if only is not None:
            return [only]
        found = {s["alias"] for s in scan.snapshots}
        for alias in connections:
            try:
                if parse_pool_config(alias, connections.settings[alias]) is not None:
                    found.add(alias)
            except ImproperlyConfigured:  # the system checks report it
                found.add(alias)
        return sorted(found)

    def _collect(self, scan: ScanResult, only: str | None, *, server: bool) -> dict[str, Any]:
        databases = {}
        for alias in self._aliases(scan, only):
            snapshots = [s for s in scan.snapshots if s["alias"] == alias]
            views = self._server_views(alias) if server else {}
            combined = sum(s["stats"].get(stats.POOL_MAX, 0) for s in snapshots)
            totals = total(snapshots)
            totals["processes"] = len(snapshots)
            databases[alias] = {
                "processes": snapshots,
                "total": totals,
                "server": next(iter(views.values()), {}),  # with several hosts, the first one's
                "warnings": [line for label, v in views.items() for line in limit_warnings(alias, combined, v, label)],
            }
            if "" not in views and views:  # a list: the JSON keeps the configured order
                databases[alias]["servers"] = [{"host": label, **view} for label, view in views.items()]
        return {
            "stats_dir": str(stats_dir()),
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "databases": databases,
            "skipped": scan.warnings,
            "removed": scan.removed,
        }

    def _server_views(self, alias: str) -> dict[str, dict[str, Any]]:
        """The server's view, keyed ``""``; with several hosts, each one's, by ``"host:port"``."""
        if alias not in connections:
            return {"": {"error": f"database {alias!r} is not in settings.DATABASES"}}
        wrapper = connections[alias]
        if wrapper.vendor != "mysql":
            raise CommandError(f"database {alias!r} is not a MySQL/MariaDB database (vendor {wrapper.vendor!r}).")
        try:
            params = wrapper.get_connection_params()
            config = parse_pool_config(alias, connections.settings[alias])
        except ImproperlyConfigured as exc:  # the system checks report it
            return {"": {"error": f"database {alias!r} is misconfigured: {exc}"}}
        if config is None or len(config.hosts) < 2:
            return {"": self._server_view(alias, params)}
        views = {}
        for label in config.hosts:
            host, port = split_label(label)
            views[label] = self._server_view(alias, {**params, "host": host, "port": port}, label)
        return views

    def _server_view(self, alias: str, params: dict[str, Any], where: str = "") -> dict[str, Any]:
        try:
            return query_server(params)
        except MySQLdb.Error as exc:
            server = f"server {where}" if where else "server"
            return {"error": f"cannot reach the {server} of database {alias!r}: {exc}"}

    def _print_prometheus(self, scan: ScanResult, only: str | None) -> None:
        from prometheus_client import CollectorRegistry, generate_latest

        from django_mysql_pooled.monitoring.prometheus import SnapshotCollector

        snapshots = [s for s in scan.snapshots if only is None or s["alias"] == only]
        collectors = CollectorRegistry(auto_describe=False)
        collectors.register(SnapshotCollector(snapshots))
        self.stdout.write(generate_latest(collectors).decode("utf-8"), ending="")

    # -- the table ------------------------------------------------------------

    def _print_table(self, report: Mapping[str, Any]) -> None:
        self.stdout.write(f"Pool statistics at {report['time']} (stats directory {report['stats_dir']})")
        if not report["databases"]:
            self.stdout.write("No database uses a pool, and no live process published statistics.")
        for alias, database in report["databases"].items():
            self.stdout.write("")
            self._print_database(alias, database)

    def _print_database(self, alias: str, database: Mapping[str, Any]) -> None:
        processes = database["processes"]
        self.stdout.write(self.style.MIGRATE_HEADING(f"Database {alias!r}"))
        if processes:
            rows = [[str(s["pid"]), s["host"], *(str(s["stats"].get(k, 0)) for _h, k in COLUMNS)] for s in processes]
            totals = database["total"]
            rows.append([f"TOTAL ({len(processes)})", "", *(str(totals.get(k, 0)) for _h, k in COLUMNS)])
            self._print_rows([["PID", "HOST", *(h for h, _k in COLUMNS)], *rows])
            self._print_hosts(processes)
        else:
            self.stdout.write(f"  No live process has a pool for database {alias!r}.")
        for view in database.get("servers", [database["server"]]):
            self._print_server(view, view.get("host", ""))
        for message in database["warnings"]:
            self.stdout.write(self.style.WARNING(f"  Warning: {message}"))

    def _print_hosts(self, processes: list[dict[str, Any]]) -> None:
        """Each server's state and connections, per process (a pool with several hosts only)."""
        rows = []
        for snapshot in processes:
            for order, entry in enumerate(snapshot.get("hosts", ())):
                retry = f"{entry.get(stats.HOST_RETRY_IN_MS, 0) / 1000:.1f} s" if entry["state"] == "down" else "-"
                numbers = (str(entry.get(key, 0)) for _h, key in HOST_COLUMNS)
                row = [entry["host"], str(snapshot["pid"]), entry["state"], retry, *numbers, entry["reason"]]
                rows.append(((order, snapshot["pid"]), row))
        if not rows:
            return
        heading = ["SERVER", "PID", "STATE", "RETRY IN", *(h for h, _k in HOST_COLUMNS), "REASON"]
        table = [heading, *(row[:-1] + [row[-1][:REASON_WIDTH]] for _key, row in sorted(rows))]
        self.stdout.write("  Servers, as each process sees them:")
        self._print_rows(table, left=(0, 1, 2, len(heading) - 1))

    def _print_rows(self, rows: list[list[str]], left: tuple[int, ...] = (0, 1)) -> None:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = [
                cell.ljust(w) if i in left else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ]
            self.stdout.write("  " + "  ".join(cells).rstrip())

    def _print_server(self, server: Mapping[str, Any], label: str = "") -> None:
        name = f"Server {label}" if label else "Server"
        if "error" in server:
            self.stdout.write(self.style.WARNING(f"  {name}: {server['error']}"))
            return
        user_limit = server["max_user_connections"] or "unlimited"
        self.stdout.write(
            f"  {name}: max_connections={server['max_connections']}, "
            f"Threads_connected={server['threads_connected']}, "
            f"this user's connections={server['user_connections']} (max_user_connections={user_limit}), "
            f"wait_timeout={server['wait_timeout']} s"
        )
