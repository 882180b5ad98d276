#!/usr/bin/env python
"""Run Django's own test suite on ``django_mysql_pooled`` and on the stock backend; compare.

Django's test suite on this backend
===================================

Django's own tests are the best description of what a database backend must
do. This script runs them twice against the same MySQL/MariaDB server:

* **stock**: ``ENGINE: "django.db.backends.mysql"`` (``settings_stock.py``),
* **pooled**: ``ENGINE: "django_mysql_pooled"`` with ``OPTIONS["pool"]`` on
  (documented defaults) for both aliases (``settings_pooled.py``),

and reports every test that fails (failure, error or unexpected success) only
with ours. It exits non-zero when such a test is not listed, with its reason,
in ``expected_differences.txt``. Tests that fail with both backends are
listed but not counted (on a server without time zone tables, e.g.
``timezones.tests.NewDatabaseTests.test_query_convert_timezones``).

Usage::

    source .venv/bin/activate
    python tests/django_suite/run.py --quick    # CI: QUICK_MODULES, ~30 s for both flavours
    python tests/django_suite/run.py            # FULL_MODULES (the issue's six and more), ~2 min
    python tests/django_suite/run.py --all      # Django's whole suite, ~20 min
    python tests/django_suite/run.py backends.mysql.tests.IsolationLevelTests   # any labels
    python tests/django_suite/run.py --only pooled -v backends   # one flavour, live output
    python tests/django_suite/run.py --parallel 2                # clones the test databases too

(Times measured on 2 cores.) ``--parallel`` other than 1 needs tblib, which
Django's parallel runner uses to send tracebacks from its workers; when it is
not installed it is put into the cache with ``pip install --target``.

The Django source release matching the installed Django (its ``tests/``
directory is not in the wheel) is fetched once with ``pip download
django==<version> --no-binary :all: --no-deps`` and cached under
``tests/django_suite/.cache/`` (git-ignored), with the logs
(``.cache/logs/<flavour>.log``) and JSON results of the last runs. Django's
``tests/runtests.py`` runs from there, against the installed Django, with
``--settings=dmp_djsuite.settings_<flavour>``; ``.cache/pythonpath/`` on
``PYTHONPATH`` holds two symlinks, ``dmp_djsuite`` (this directory) and
``django_mysql_pooled`` (the backend in this checkout), and nothing else (see
``import_dir()``). ``recording.py`` is the ``TEST_RUNNER`` and records each
test's outcome. To try a patched copy of the backend without touching the
checkout, put it first: ``PYTHONPATH=/tmp/patched python tests/django_suite/run.py``.

The server comes from ``DATABASE_URL`` (any ``mysql://`` or
``mysql-pooled://`` URL; pool options in it are ignored), else
``root@127.0.0.1:3306``. Test databases are named
``dmp_djsuite_<flavour>_default`` and ``..._other`` (``--parallel N`` adds
``_1`` .. ``_N`` clones, made with ``mysqldump``); ``$DMP_DJSUITE_DB_PREFIX``
changes the prefix.

Expected differences: Django's suite assumes a connection per request in a
few places. ``expected_differences.txt`` lists each such test with the reason
(today the two ``ConnectionHealthChecksTests`` that Django's own PostgreSQL
backend skips with its pool on, "Pool does implicit health checks"); a
listed test that passes again is reported so the entry can go.

Exit status: 0 no unexpected difference; 1 tests fail only with ours and are
not in ``expected_differences.txt``; 2 a run did not complete or could not
destroy its test databases (see its log).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CACHE = HERE / ".cache"
EXPECTED_FILE = HERE / "expected_differences.txt"

#: Django's test modules where a pool can behave differently from a connection
#: per request: connection life cycle, transactions, locking, test isolation
#: and database setup (the issue's six first), plus the ORM basics. About 70 s
#: per flavour on 2 cores.
FULL_MODULES = (
    "backends",
    "transactions",
    "select_for_update",
    "test_utils",
    "basic",
    "queries",
    "transaction_hooks",
    "multiple_database",
    "handlers",
    "db_utils",
    "async",
    "get_or_create",
    "delete_regress",
    "servers",
    "test_runner",
    "timezones",
    "sessions_tests",
    "schema",
    "migrations",
)
#: The CI subset: about 15 s per flavour on 2 cores.
QUICK_MODULES = ("backends", "transactions", "transaction_hooks", "select_for_update", "basic", "handlers", "servers")

FLAVOURS = {
    "stock": ("dmp_djsuite.settings_stock", "django.db.backends.mysql"),
    "pooled": ("dmp_djsuite.settings_pooled", "django_mysql_pooled (pool on)"),
}


# -- the Django source ----------------------------------------------------


def django_version() -> str:
    import django

    return django.__version__


def fetch_django_tests(version: str, cache: Path = CACHE) -> Path:
    """Return Django's ``tests/`` directory for *version*, downloading it once."""
    root = cache / f"django-{version}"
    tests = root / "tests"
    if (tests / "runtests.py").is_file():
        return tests
    downloads = cache / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    sdists = _sdists(downloads, version)
    if not sdists:
        print(f"Fetching the Django {version} source release (pip download)...", flush=True)
        cmd = [sys.executable, "-m", "pip", "download", f"django=={version}"]
        cmd += ["--no-binary", ":all:", "--no-deps", "-d", str(downloads)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        sdists = _sdists(downloads, version)
        if done.returncode != 0 or not sdists:
            raise SystemExit(
                f"Could not download the Django {version} source release:\n{done.stdout}{done.stderr}\n"
                "Its tests/ directory is needed; a development version of Django has no release to fetch."
            )
    # Extract only tests/ next to the final place, then rename: never a half-extracted cache.
    with tempfile.TemporaryDirectory(dir=cache) as scratch, tarfile.open(sdists[0]) as tar:
        prefix = tar.getnames()[0].split("/", 1)[0]
        members = [m for m in tar.getmembers() if m.name.startswith(f"{prefix}/tests/")]
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
            tar.extractall(scratch, members=members, filter="data")
        else:  # pragma: no cover - old patch releases
            tar.extractall(scratch, members=members)
        root.mkdir(exist_ok=True)
        os.replace(Path(scratch) / prefix / "tests", tests)
    return tests


#: Replaces Django's ``tests/.coveragerc`` in the cache. ``runtests.py`` sets
#: ``COVERAGE_PROCESS_START`` to it, and with coverage installed (it is, for
#: this project's own suite) every Python subprocess the tests start would
#: trace all of Django with branch coverage: twice the time (admin_scripts
#: 158 s -> 66 s) and about 1 GB of data files for ``--all``.
COVERAGERC = """\
[run]
# Written by tests/django_suite/run.py: measure nothing.
source = dmp_djsuite_measures_nothing
data_file = ${RUNTESTS_DIR-.}/.coverages/.coverage
"""


def neutralise_coverage(tests_dir: Path) -> None:
    """Make Django's subprocess coverage a no-op and drop old data (see ``COVERAGERC``)."""
    rc = tests_dir / ".coveragerc"
    if not rc.is_file() or rc.read_text(encoding="utf-8") != COVERAGERC:
        rc.write_text(COVERAGERC, encoding="utf-8")
    shutil.rmtree(tests_dir / ".coverages", ignore_errors=True)


def _sdists(directory: Path, version: str) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.lower() == f"django-{version}.tar.gz")


def tblib_dir(cache: Path = CACHE) -> Path | None:
    """A directory holding tblib when it is not installed, for ``--parallel`` (else ``None``).

    Django's parallel runner pickles each failure's traceback in the worker;
    without tblib that raises there and aborts the whole run. It is installed
    with pip into the cache (``pip install --target``), not into the
    environment.
    """
    if importlib.util.find_spec("tblib") is not None:
        return None
    target = cache / "deps"
    if not (target / "tblib").is_dir():
        print("Installing tblib into the cache for --parallel (pip install --target)...", flush=True)
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "tblib>=1.5"]
        subprocess.run(cmd, check=True)
    return target


# -- one run ----------------------------------------------------------------


def import_dir(cache: Path = CACHE) -> Path:
    """A directory holding only ``dmp_djsuite`` (this directory) and ``django_mysql_pooled``.

    It goes on ``PYTHONPATH`` instead of the repository root: Django's
    ``admin_scripts`` tests put the parent directory of a third-party ENGINE
    package on their subprocesses' ``PYTHONPATH``, and the repository root
    holds ``testproject/``, which makes ``startproject testproject`` refuse the
    name (a namespace package of that name exists).
    """
    directory = cache / "pythonpath"
    directory.mkdir(parents=True, exist_ok=True)
    for name, target in (("dmp_djsuite", HERE), ("django_mysql_pooled", REPO / "django_mysql_pooled")):
        link = directory / name
        if not (link.is_symlink() and link.resolve() == target.resolve()):
            link.unlink(missing_ok=True)
            link.symlink_to(target, target_is_directory=True)
    return directory


@dataclass
class Outcome:
    """What one flavour's run recorded (see ``recording.py``)."""

    flavour: str
    tests_run: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    unexpected_successes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    returncode: int = 0
    log: Path | None = None
    complete: bool = False
    teardown_error: str = ""
    labels: list[str] = field(default_factory=list)

    @property
    def bad(self) -> dict[str, str]:
        """Every failing test id (normalised) with its traceback."""
        bad: dict[str, str] = {}
        for source in (self.failures, self.errors):
            bad.update(source)
        for test_id in self.unexpected_successes:
            bad[test_id] = "unexpected success"
        return bad


#: What a subtest id carries after a trip through ``--parallel``'s pickling:
#: Django's message sentinel becomes a new ``object()`` with a new address.
_SENTINEL = re.compile(r" \[<object object at 0x[0-9a-fA-F]+>\]")


def normalise(test_id: str) -> str:
    """``setUpClass (mod.Class)`` -> ``mod.Class.setUpClass``; no per-process addresses."""
    test_id = _SENTINEL.sub("", test_id)
    if test_id.endswith(")") and " (" in test_id and "." not in test_id.split(" (", 1)[0]:
        hook, owner = test_id[:-1].split(" (", 1)
        return f"{owner}.{hook}"
    return test_id


def label_of(test_id: str) -> str:
    """The runtests.py label that runs *test_id* (no subtest parameters, no class hook)."""
    label = test_id.split(" (", 1)[0].split(" [", 1)[0]
    head, _, last = label.rpartition(".")
    return head if last in ("setUpClass", "tearDownClass", "setUpModule", "tearDownModule") else label


def run_flavour(
    flavour: str, tests_dir: Path, labels: Sequence[str], parallel: int, verbose: bool, timeout: float
) -> Outcome:
    settings_module, title = FLAVOURS[flavour]
    logs = CACHE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{flavour}.log"
    result = logs / f"{flavour}.json"
    result.unlink(missing_ok=True)
    env = dict(os.environ)
    # An existing PYTHONPATH comes first: PYTHONPATH=/tmp/patched run.py tests a patched copy.
    extra = tblib_dir() if parallel != 1 else None
    paths = [env.get("PYTHONPATH"), str(import_dir()), str(extra) if extra else None]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    env["DMP_DJSUITE_RESULT"] = str(result)
    env.setdefault("PYTHONUNBUFFERED", "1")
    neutralise_coverage(tests_dir)
    cmd = [sys.executable, "runtests.py", f"--settings={settings_module}", f"--parallel={parallel}"]
    cmd += ["--noinput", "--verbosity=2", *labels]
    print(f"== {flavour}: {title}: {' '.join(labels) or '(all)'} (log: {log.relative_to(REPO)})", flush=True)
    outcome = Outcome(flavour, log=log)  # only the return code is kept; the rest comes from the JSON
    start = time.monotonic()
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(f"$ cd {tests_dir} && {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(
            cmd, cwd=tests_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        assert proc.stdout is not None
        try:
            for line in _lines_until(proc, start + timeout):
                fh.write(line)
                if verbose:
                    sys.stdout.write(line)
        finally:
            if proc.poll() is None:
                proc.kill()
            outcome.returncode = proc.wait()
    if result.is_file():
        data = json.loads(result.read_text(encoding="utf-8"))
        data.update(seconds=time.monotonic() - start, labels=list(labels), returncode=outcome.returncode)
        result.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    return load_outcome(flavour)


def load_outcome(flavour: str) -> Outcome:
    """The outcome of *flavour*'s last run, from ``.cache/logs/<flavour>.json``."""
    logs = CACHE / "logs"
    outcome = Outcome(flavour, log=logs / f"{flavour}.log")
    result = logs / f"{flavour}.json"
    if not result.is_file():
        return outcome
    data: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    outcome.tests_run = data["tests_run"]
    outcome.failures = {normalise(k): v for k, v in data["failures"].items()}
    outcome.errors = {normalise(k): v for k, v in data["errors"].items()}
    outcome.skipped = {normalise(k): v for k, v in data["skipped"].items()}
    outcome.unexpected_successes = [normalise(k) for k in data["unexpected_successes"]]
    outcome.teardown_error = data.get("teardown_error", "")
    outcome.complete = not data.get("should_stop") and not outcome.teardown_error
    outcome.seconds = data.get("seconds", 0.0)
    outcome.returncode = data.get("returncode", 0)
    outcome.labels = data.get("labels", [])
    return outcome


def _lines_until(proc: subprocess.Popen[str], deadline: float) -> Iterable[str]:
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                yield f"\n[run.py] timed out; killing runtests.py (pid {proc.pid})\n"
                return
            if selector.select(timeout=min(remaining, 5.0)):
                line = proc.stdout.readline()
                if not line:
                    return
                yield line


# -- expected differences ---------------------------------------------------


def load_expected(path: Path = EXPECTED_FILE) -> dict[str, str]:
    """``{test id or prefix: reason}``; every entry must give a reason."""
    expected: dict[str, str] = {}
    if not path.is_file():
        return expected
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern, _, reason = line.partition(" ")
        if not reason.strip():
            raise SystemExit(f"{path}:{number}: {pattern!r} has no reason; write one after the test id.")
        expected[pattern] = reason.strip()
    return expected


def matches(pattern: str, test_id: str) -> bool:
    """A pattern names a test, or a module/class prefix of it (``x.y`` covers ``x.y.z``)."""
    return test_id == pattern or test_id.startswith((pattern + ".", pattern + " "))


def covered(pattern: str, labels: Sequence[str]) -> bool:
    """Whether the run of *labels* includes the test(s) *pattern* names."""
    if not labels:
        return True
    return any(matches(label, pattern) or matches(pattern, label) for label in labels)


# -- the report -------------------------------------------------------------


def excerpt(text: str, lines: int = 12) -> str:
    body = text.strip().splitlines()
    if len(body) > lines:
        body = ["...", *body[-lines:]]
    return textwrap.indent("\n".join(body), "      ")


def print_grouped(test_ids: Iterable[str]) -> None:
    """One line per test method; failing subtests are counted, not listed."""
    groups: dict[str, int] = {}
    for test_id in test_ids:
        label = label_of(test_id) if test_id.endswith((")", "]")) else test_id
        groups[label] = groups.get(label, 0) + 1
    for label, count in sorted(groups.items()):
        print(f"  {label}" + (f" ({count} subtests)" if count > 1 else ""))


def report(stock: Outcome, pooled: Outcome, labels: Sequence[str], expected: dict[str, str]) -> int:
    print()
    print(f"Django {django_version()} test suite: {' '.join(labels) or '(all)'}")
    print(f"  {'flavour':<8} {'tests':>6} {'failures':>9} {'errors':>7} {'unexp.ok':>9} {'skipped':>8} {'time':>8}")
    for o in (stock, pooled):
        state = "" if o.complete else "   INCOMPLETE (see log)"
        print(
            f"  {o.flavour:<8} {o.tests_run:>6} {len(o.failures):>9} {len(o.errors):>7} "
            f"{len(o.unexpected_successes):>9} {len(o.skipped):>8} {o.seconds:>7.0f}s{state}"
        )
    ours = pooled.bad
    theirs = stock.bad
    only_ours = sorted(set(ours) - set(theirs))
    only_stock = sorted(set(theirs) - set(ours))
    both = sorted(set(ours) & set(theirs))
    unexpected: list[str] = []
    explained: list[tuple[str, str]] = []
    for test_id in only_ours:
        reason = next((r for p, r in expected.items() if matches(p, test_id)), None)
        if reason is None:
            unexpected.append(test_id)
        else:
            explained.append((test_id, reason))
    if both:
        print(f"\nFail with both backends ({len(both)}): not ours to fix")
        print_grouped(both)
    if only_stock:
        print(f"\nFail only with the stock backend ({len(only_stock)}):")
        print_grouped(only_stock)
    skipped_only_ours = sorted(set(pooled.skipped) - set(stock.skipped))
    if skipped_only_ours:
        print(f"\nSkipped only with ours ({len(skipped_only_ours)}):")
        for test_id in skipped_only_ours:
            print(f"  {test_id}: {pooled.skipped[test_id]}")
    if explained:
        print(f"\nFail only with ours, expected ({len(explained)}; reasons in {EXPECTED_FILE.name}):")
        for test_id, reason in explained:
            print(f"  {test_id}\n      {reason}")
    seen = set(ours)
    stale = [p for p in expected if covered(p, labels) and not any(matches(p, t) for t in seen)]
    if stale and stock.complete and pooled.complete:
        print(f"\nListed in {EXPECTED_FILE.name} but passing now (remove them?):")
        for pattern in stale:
            print(f"  {pattern}")
    if unexpected:
        print(f"\nFAIL ONLY WITH OURS, UNEXPECTED ({len(unexpected)}):")
        for test_id in unexpected:
            print(f"  {test_id}\n{excerpt(ours[test_id])}")
    print()
    if unexpected:
        rerun = sorted({label_of(test_id) for test_id in unexpected})
        print(f"Re-run them: python {Path(__file__).relative_to(REPO)} {' '.join(rerun)}")
        print()
    if not (stock.complete and pooled.complete):
        for o in (stock, pooled):
            if o.teardown_error:
                print(f"{o.flavour}: destroying the test databases failed:\n{excerpt(o.teardown_error)}")
            elif not o.complete and o.log is not None:
                tail = o.log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
                print(f"{o.flavour} run did not complete (exit {o.returncode}); end of {o.log}:")
                print(textwrap.indent("\n".join(tail), "  "))
        print("RESULT: ERROR, a run did not complete")
        return 2
    if unexpected:
        print(f"RESULT: FAIL, {len(unexpected)} test(s) fail only with django_mysql_pooled")
        return 1
    print(f"RESULT: OK, no failure beyond the stock backend's ({len(explained)} expected difference(s))")
    return 0


# -- main -------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run Django's test suite on django_mysql_pooled and the stock MySQL backend; compare.",
    )
    parser.add_argument("labels", nargs="*", help=f"test labels (default: {' '.join(FULL_MODULES)})")
    parser.add_argument("--quick", action="store_true", help=f"the CI subset: {' '.join(QUICK_MODULES)}")
    parser.add_argument(
        "--all", action="store_true", help="Django's whole suite (18,000 tests: about 10 minutes per flavour)"
    )
    parser.add_argument("--only", choices=sorted(FLAVOURS), help="run one flavour, no comparison")
    parser.add_argument(
        "--parallel", type=int, default=1, help="runtests.py --parallel: 1 (default), N or 0 for one per core"
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per flavour (default: 3600)")
    parser.add_argument("-v", "--verbose", action="store_true", help="stream runtests.py's output")
    parser.add_argument("--report", action="store_true", help="only report again on the last runs' results")
    parser.add_argument("--fetch-only", action="store_true", help="download and cache Django's tests, then exit")
    args = parser.parse_args(argv)
    if sum(map(bool, (args.quick, args.all, args.labels))) > 1:
        parser.error("--quick, --all and explicit labels are exclusive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    labels = [] if args.all else list(args.labels or (QUICK_MODULES if args.quick else FULL_MODULES))
    if args.report:
        stock, pooled = load_outcome("stock"), load_outcome("pooled")
        if stock.labels != pooled.labels:
            print("warning: the last stock and pooled runs ran different labels", file=sys.stderr)
        return report(stock, pooled, pooled.labels, load_expected())
    tests_dir = fetch_django_tests(django_version())
    if args.fetch_only:
        print(tests_dir)
        return 0
    flavours = [args.only] if args.only else ["stock", "pooled"]
    outcomes = {f: run_flavour(f, tests_dir, labels, args.parallel, args.verbose, args.timeout) for f in flavours}
    if args.only:
        o = outcomes[args.only]
        print(f"{o.flavour}: {o.tests_run} tests, {len(o.bad)} failing, {o.seconds:.0f}s; results in {o.log}")
        for test_id, text in sorted(o.bad.items()):
            print(f"  {test_id}\n{excerpt(text)}")
        return 0 if o.complete and not o.bad else (2 if not o.complete else 1)
    return report(outcomes["stock"], outcomes["pooled"], labels, load_expected())


if __name__ == "__main__":
    sys.exit(main())
