"""Server-side query cancellation: ``QuerySet.cancellable()``, scopes, the watchdog and the killers.

:mod:`.queryset` (the QuerySet API) evaluates inside a :func:`.scope.cancel_scope`,
whose deadlines and tokens the process-wide :mod:`.watchdog` thread fires with
``KILL QUERY`` over a :mod:`.killer` connection, never one from the pool.
"""
