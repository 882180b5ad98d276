"""The connection pool core: slots and waiters, validation, maintenance, statistics.

Django-free and driver-free: it is given callables to connect, reset, check,
interrupt and close connections (see :class:`~.pool.ConnectionPool`), and
raises the classes its ``errors`` names. Nothing here imports Django or
MySQLdb (a test walks the imports).
"""
