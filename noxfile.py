"""The supported-versions matrix: Python x Django x mysqlclient.

    nox -s tests            # every combination (16 sessions), one after another
    nox -t ci               # the subset .ci/run runs: the oldest and the newest combination
    nox -l                  # list the sessions
    nox -s "tests(py3.13-dj6.1-mc2.3)" -- -k cancel     # one session; arguments after -- go to pytest

Each session runs the suite without the tests marked ``slow`` (soak, race
stress, slow-network timing) unless pytest arguments are given after ``--``
(``nox -s tests -- -m ""`` runs everything). Each session has its own test
database (``DMP_TEST_DB_NAME``) and its own pool-statistics directory, so two
sessions, or a session and another checkout's test run, never share one.

The interpreters come from pyenv: every ``$(pyenv root)/versions/3.X.Y``
(the newest patch release of each minor version) is put on ``PATH`` before
nox looks for ``python3.X``, so no ``pyenv global``/``pyenv local`` is needed.
An interpreter that cannot be found fails its sessions when ``CI`` is set
(nox's default) and skips them otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

PYTHONS = ("3.10", "3.11", "3.12", "3.13")
DJANGOS = ("5.2", "6.0", "6.1")
MYSQLCLIENTS = ("2.2", "2.3")
#: Django 6.0 and later need Python 3.12 or later.
DJANGO_MIN_PYTHON = {"5.2": "3.10", "6.0": "3.12", "6.1": "3.12"}
#: The sessions .ci/run runs (``nox -t ci``): the oldest supported combination and the newest.
CI_SUBSET = {("3.10", "5.2", "2.2"), ("3.13", "6.1", "2.3")}

nox.options.sessions = ["tests"]
nox.options.reuse_venv = "yes"
nox.options.download_python = "never"


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _pyenv_root() -> Path | None:
    root = os.environ.get("PYENV_ROOT")
    if root:
        return Path(root)
    pyenv = shutil.which("pyenv")
    if pyenv:
        out = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False).stdout.strip()
        if out:
            return Path(out)
    default = Path.home() / ".pyenv"
    return default if default.is_dir() else None


def _put_pyenv_pythons_on_path() -> None:
    """Prepend the newest pyenv install of each wanted minor version to ``PATH``.

    pyenv's shims only run the versions selected with ``pyenv global``/``local``,
    so nox would find a ``python3.10`` shim that refuses to start: the real
    ``bin`` directories go first.
    """
    root = _pyenv_root()
    if root is None:
        return
    newest: dict[str, Path] = {}
    for path in (root / "versions").glob("3.*"):
        if not re.fullmatch(r"3\.\d+\.\d+", path.name) or not (path / "bin").is_dir():
            continue
        minor = path.name.rsplit(".", 1)[0]
        if minor in PYTHONS and (minor not in newest or _version_key(path.name) > _version_key(newest[minor].name)):
            newest[minor] = path
    dirs = [str(newest[minor] / "bin") for minor in PYTHONS if minor in newest]
    if dirs:
        os.environ["PATH"] = os.pathsep.join([*dirs, os.environ.get("PATH", "")])


_put_pyenv_pythons_on_path()


def _combinations() -> list[nox.param]:
    params = []
    for python in PYTHONS:
        for django in DJANGOS:
            if _version_key(python) < _version_key(DJANGO_MIN_PYTHON[django]):
                continue
            for mysqlclient in MYSQLCLIENTS:
                tags = ["ci"] if (python, django, mysqlclient) in CI_SUBSET else []
                params.append(
                    nox.param(
                        python,
                        django,
                        mysqlclient,
                        id=f"py{python}-dj{django}-mc{mysqlclient}",
                        tags=tags,
                    )
                )
    return params


@nox.session
@nox.parametrize(["python", "django", "mysqlclient"], _combinations())
def tests(session: nox.Session, django: str, mysqlclient: str) -> None:
    """The test suite (without ``slow``) on one Python x Django x mysqlclient combination."""
    python = str(session.python)
    session.install(f"Django~={django}.0", f"mysqlclient~={mysqlclient}.0", "-e", ".[test]")
    session.run("python", "-c", _VERSIONS_SCRIPT)
    db_name = "test_dmp_py{}_dj{}_mc{}".format(*(v.replace(".", "") for v in (python, django, mysqlclient)))
    stats_dir = os.path.join(session.create_tmp(), "pool-stats")
    args = session.posargs or ["-m", "not slow"]
    session.run(
        "python",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--durations=5",
        *args,
        env={"DMP_TEST_DB_NAME": db_name, "DJANGO_MYSQL_POOLED_STATS_DIR": stats_dir},
    )


_VERSIONS_SCRIPT = """
import platform
from importlib.metadata import version
print(f"Python {platform.python_version()}, Django {version('Django')}, mysqlclient {version('mysqlclient')}")
"""
