"""Server-side query cancellation: ``QuerySet.cancellable()``, scopes, the watchdog and the killers.

:mod:`.queryset` (the QuerySet API) evaluates inside a :mod:`.scope`, active on
a connection only while its own statements run; :mod:`.hook` (the execute
wrapper) records each statement as an :mod:`.execution`, which the
process-wide :mod:`.watchdog` hands at its deadline to the :mod:`.killer` of
its server: ``KILL QUERY`` over a dedicated :mod:`.connection`, never one from
the pool, sent by that killer's own :mod:`.sender` thread.
"""
