"""Watching the pools: published snapshots, ``manage.py poolstats``' data, Prometheus, system checks.

:mod:`.publisher` writes each pool's statistics to a private directory,
:mod:`.snapshots` reads them back (and the server's view), :mod:`.prometheus`
exposes them, :mod:`.checks` checks the settings against the server.
"""
