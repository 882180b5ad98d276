"""Sessions over mysqlclient: open, reset and restore, validate, return; the deferred setup.

The one reach below mysqlclient's public API (``COM_RESET_CONNECTION``, the
status flags and the socket) is :mod:`.native`; :mod:`.restore` makes a reset
session look new; :mod:`.factory` gives the pool core its callables;
:mod:`.checkin` rolls back before a return; :mod:`.deferred_setup` sends a
``copy()`` wrapper's differing settings with its first statement.
"""
