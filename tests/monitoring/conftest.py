"""Fixtures of the monitoring tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def stats_path(settings: Any, tmp_path: Path) -> Path:
    """Every snapshot of the test goes to a temporary directory (modules use it with ``usefixtures``)."""
    path = tmp_path / "stats"
    settings.DJANGO_MYSQL_POOLED_STATS_DIR = str(path)
    return path
