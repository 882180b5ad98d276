"""A project's own backend built on this one (``ENGINE: "tests.testapp.subclassed_backend"``)."""

from __future__ import annotations

from django_mysql_pooled.base import DatabaseWrapper as PooledWrapper


class DatabaseWrapper(PooledWrapper):
    """What a project adds to the pooled backend (here: nothing)."""
