"""Security review (sec-review): wrappers of one alias with other connection settings share one pool.

The pool is per alias and is built from the settings of whichever wrapper
checks out first; ``get_new_connection()`` ignores the wrapper's own
``conn_params`` and ``get_connection_params()`` now even returns the pool's.
Only ``OPTIONS["isolation_level"]`` is reconciled (``deferred_setup.py``). A
``connection.copy()`` (or a test/tenant wrapper) whose ``NAME``, ``USER``,
``PASSWORD``, ``HOST``, ``ssl`` or ``init_command`` differ silently gets the
pool's session instead; and if it is the first to connect, every later
request of the alias gets *its* settings (its user's privileges, its
database). The stock backend connects each wrapper with its own settings.
"""

from __future__ import annotations

from typing import Any

import pytest

SEC_3 = "SEC-3: a wrapper of the alias with other NAME/USER/HOST gets the pool's session, or imposes its own"


def _database(wrapper: Any) -> str:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT DATABASE()")
        return str(cursor.fetchone()[0])


def test_copy_with_other_name_gets_its_own_database(pooled: Any) -> None:
    main = pooled({"max_size": 2}, alias="sec_shared_alias")
    expected = main.settings_dict["NAME"]
    other = main.copy()
    other.settings_dict["NAME"] = "mysql"  # e.g. a maintenance copy pointed at another schema
    # The copy happens to connect first (the first checkout of the alias in this process).
    seen_by_other = _database(other)
    other.close()
    seen_by_main = _database(main)
    main.close()
    assert (seen_by_other, seen_by_main) == ("mysql", expected), (
        f"copy with NAME='mysql' saw {seen_by_other!r}; the alias's own wrapper then saw {seen_by_main!r}"
    )


@pytest.mark.parametrize("copy_first", [True, False])
def test_each_wrapper_keeps_its_own_database_at_every_connect(pooled: Any, copy_first: bool) -> None:
    """Not only at the first connect: the parameters the pool ignores must not become the copy's."""
    main = pooled({"max_size": 2}, alias=f"sec_shared_alias_{copy_first}")
    expected = main.settings_dict["NAME"]
    other = main.copy()
    other.settings_dict["NAME"] = "mysql"
    order = [(other, "mysql"), (main, expected)] if copy_first else [(main, expected), (other, "mysql")]
    for _ in range(2):
        for wrapper, database in order:
            assert _database(wrapper) == database
            wrapper.close()
