"""Benchmarks: django_mysql_pooled against per-request connections, persistent
connections and django-db-connection-pool, measured side by side in one run.

Run ``python -m bench --quick`` (seconds, a smoke test), ``--medium`` or the
default full run; see ``bench/README.md``.
"""
