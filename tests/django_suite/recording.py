"""``TEST_RUNNER`` for Django's ``runtests.py``: records every outcome as JSON.

``run.py`` sets ``DMP_DJSUITE_RESULT`` to a file path; at the end of the run
the result object (the main process's, which also receives the events of
``--parallel`` workers) writes the tests run and the id of every failure,
error, skip, expected failure and unexpected success there, with the
formatted traceback or skip reason. A failure to destroy the test databases
afterwards (e.g. a connection still holding a lock) is added as
``teardown_error``.
"""

from __future__ import annotations

import json
import os
import traceback
import unittest
from typing import Any

from django.test.runner import DiscoverRunner

RESULT_ENV = "DMP_DJSUITE_RESULT"


def _ids(pairs: list[tuple[unittest.TestCase, str]]) -> dict[str, str]:
    recorded: dict[str, str] = {}
    for test, text in pairs:
        key = test.id()
        if key in recorded:  # e.g. several failing subtests with equal params
            recorded[key] += "\n" + text
        else:
            recorded[key] = text
    return recorded


class RecordingMixin(unittest.TestResult):
    """Writes the outcome to ``$DMP_DJSUITE_RESULT`` in ``stopTestRun()``."""

    def stopTestRun(self) -> None:
        super().stopTestRun()
        path = os.environ.get(RESULT_ENV)
        if not path:
            return
        record = {
            "tests_run": self.testsRun,
            "failures": _ids(self.failures),
            "errors": _ids(self.errors),
            "skipped": _ids(self.skipped),
            "expected_failures": sorted(_ids(self.expectedFailures)),
            "unexpected_successes": sorted(t.id() for t in self.unexpectedSuccesses),
            "should_stop": self.shouldStop,
        }
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)


class RecordingRunner(DiscoverRunner):
    """``DiscoverRunner`` whose result class also records (see the module docstring)."""

    def get_resultclass(self) -> Any:
        base = super().get_resultclass() or unittest.TextTestResult
        return type(f"Recording{base.__name__}", (RecordingMixin, base), {})

    def teardown_databases(self, old_config: Any, **kwargs: Any) -> None:
        try:
            super().teardown_databases(old_config, **kwargs)
        except BaseException:
            path = os.environ.get(RESULT_ENV)
            if path and os.path.exists(path):
                with open(path, encoding="utf-8") as fh:
                    record = json.load(fh)
                record["teardown_error"] = traceback.format_exc()
                with open(path, "w", encoding="utf-8") as fh:
                    json.dump(record, fh, indent=1, sort_keys=True)
            raise
