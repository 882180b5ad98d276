"""TLS for the private server: a throw-away CA and server certificate made with ``openssl``.

:func:`make_certificates` writes a CA and a server certificate for
``127.0.0.1`` (EC P-256, valid two days) into a directory of the test run;
:func:`tls_server_options` turns them into ``mariadbd`` options that require
TLS for every TCP connection (``require_secure_transport``). The benchmarks'
TLS mode (``bench/tls.py``) uses the same two functions.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

__all__ = ["Certificates", "make_certificates", "tls_server_options"]


@dataclasses.dataclass(frozen=True)
class Certificates:
    """Paths of the PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path


def _openssl(directory: Path, *args: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl not found on PATH (Debian: apt-get install openssl)")
    subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path) -> Certificates:
    """Create ``ca.pem`` and ``server.pem``/``server-key.pem`` (for ``127.0.0.1``) in *directory*."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca = ["-subj", "/CN=dmp test CA", "-keyout", "ca-key.pem", "-out", "ca.pem"]
    _openssl(directory, "req", "-x509", *ec, "-days", "2", *ca)
    _openssl(directory, "req", *ec, "-subj", "/CN=127.0.0.1", "-keyout", "server-key.pem", "-out", "server.csr")
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    _openssl(
        directory,
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
        "-days", "2", "-extfile", "server.ext", "-out", "server.pem",
    )  # fmt: skip
    return Certificates(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")


def tls_server_options(certs: Certificates) -> list[str]:
    """``mariadbd`` options: these certificates, and TLS required for every TCP connection."""
    return [
        f"--ssl-ca={certs.ca}",
        f"--ssl-cert={certs.server_cert}",
        f"--ssl-key={certs.server_key}",
        "--require-secure-transport=ON",
    ]
