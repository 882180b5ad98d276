"""The ``tls`` workload's server: a private ``mariadbd`` that requires TLS.

The shared server of the other workloads has no certificate (and its globals
are not ours to change), so this workload starts its own server on a free
loopback port, with a CA and server certificate made by ``openssl``
(``require_secure_transport = ON``), creates the bench table there and
stops the server at the end. It reuses the test suite's private server
(:mod:`tests.faults.mariadb`) and certificates (:mod:`tests.faults.tls`):
run it from a source checkout with the ``test`` extra installed.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import db
from bench.modes import Server


@contextmanager
def tls_server(run_dir: Path) -> Iterator[Server]:
    """Start the private TLS server; yield how to reach it (root, verified TLS); stop it."""
    from tests.faults.mariadb import PrivateMariaDB
    from tests.faults.tls import make_certificates, tls_server_options

    run_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tls-", dir=run_dir) as tmp:
        base = Path(tmp)
        certs = make_certificates(base / "certs")
        server = Server(host="127.0.0.1", port=0, user="root", password="", ssl_ca=str(certs.ca))
        (base / "mariadb").mkdir()
        mariadb = PrivateMariaDB(
            base / "mariadb", server_options=tls_server_options(certs), client_options=server.tls_options()
        )
        try:
            mariadb.start()
            server = dataclasses.replace(server, host=mariadb.host, port=mariadb.port)
            db.prepare(server)
            yield server
        finally:
            mariadb.stop()
