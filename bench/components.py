"""What D's extra instructions per cycle are made of: each part of a checkout counted on its own.

:mod:`bench.instructions` counts whole request cycles; this counts, in one
callgrind run of mode D (``num_workers = 0``, like the cycles), each part of
what D does per request that B does not, repeated *uses* times in a window
of its own (window edges as in :mod:`bench.instructions`):

* ``reset``: the pool's reset callable on a checked-out connection:
  ``COM_RESET_CONNECTION`` and the restore batch (``session/restore.py``);
* ``pool``: :meth:`~ConnectionPool.getconn` plus
  :meth:`~ConnectionPool.putconn`, less ``reset`` (which the checkin runs);
* ``django``: Django's ``ensure_connection()`` (its ``connect()``) plus
  ``close()``, with the backend's overrides, less the pool's pair;
* ``health_check``: ``is_usable()`` (a ping): what B does instead, per
  request (``CONN_HEALTH_CHECKS``).

Every window's count has an empty loop's window subtracted (the loop and the
edge's garbage collection), then is divided by *uses*. So D - B is about
``reset + pool + django - health_check`` (plus the difference of the cursor
wrappers, small): the section "Where D's extra instructions go" of
RESULTS.md sets them side by side.

``python -m bench.components USES`` is what runs under valgrind;
:func:`measure` drives it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from bench import instructions

#: The parts, in the order they are counted; each window is named after its part.
PARTS = ("reset", "pool", "django", "health_check")


def main(uses: int) -> int:
    os.environ["DMP_BENCH_MODE"] = "D"
    os.environ["DMP_BENCH_NUM_WORKERS"] = "0"  # the reset at checkin runs in this thread (as in bench.instructions)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.site.settings")
    import django

    django.setup()
    from django.db import connections

    from bench import cycles

    wrapper = connections["default"]  # (not django.db.connection: its proxy costs more than some parts)
    cycles.cycles(50)  # connections opened, caches warm
    pool = wrapper.pool
    conn = pool.getconn()
    reset = pool.restorer
    instructions.mark()  # dump 1: start-up and warm-up
    for _ in range(uses):
        pass
    instructions.mark()  # dump 2: the empty loop
    for _ in range(uses):
        reset(conn)
    instructions.mark()  # dump 3: reset
    pool.putconn(conn)
    for _ in range(uses):
        pool.putconn(pool.getconn())
    instructions.mark()  # dump 4: pool + reset
    for _ in range(uses):
        wrapper.ensure_connection()
        wrapper.close()
    instructions.mark()  # dump 5: django + pool + reset
    wrapper.ensure_connection()
    for _ in range(uses):
        wrapper.is_usable()
    instructions.mark()  # dump 6: health check
    connections.close_all()
    return 0


def measure(uses: int, env: dict[str, str], out_dir: Path) -> dict[str, Any]:
    """Instructions per use of each of :data:`PARTS` (one callgrind run of mode D).

    :param env: the worker's environment (:func:`bench.workerctl.mode_env`).
    :raises RuntimeError: valgrind or the run failed.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "callgrind.components"
    totals = instructions.run_marked([sys.executable, "-m", "bench.components", str(uses)], env, out, dumps=6)
    empty = totals[1]
    reset, pool, django, health = (total - empty for total in totals[2:])
    windows = {"reset": reset, "pool": pool - reset, "django": django - pool, "health_check": health}
    return {"uses": uses, "parts": {name: windows[name] / uses for name in PARTS}, "empty_window": empty}


if __name__ == "__main__":
    raise SystemExit(main(int(sys.argv[1])))
