"""Chaos run of ``manage.py runworkers``: kill, pause and starve its processes, count the damage.

Run from the repository root, in a virtualenv where the project is installed with
its ``test`` extra::

    python bench/chaos.py                      # every scenario, 20,000 jobs in scenario 1
    python bench/chaos.py --short --scenarios 1,2,7 --json

It starts its own PostgreSQL cluster (``initdb`` into a temporary directory, run as
the ``postgres`` user when started as root) and its own ``redis-server``, each on a spare
port, never the machine's. Workers are ``manage.py runworkers`` commands of the small
project in ``bench/chaos_project`` (short leases, see its settings). Each scenario starts
from empty tables, dispatches its jobs, injects its faults, waits (polling the database,
with a deadline) until every job is in a final state, and prints one row. Everything
started is stopped at exit, on Ctrl-C and on errors too.

Scenarios:

1. two pools, a random worker process SIGKILLed every second, each supervisor SIGKILLed
   once and restarted (plain jobs with ``max_attempts=1``);
2. PostgreSQL stopped with ``pg_ctl stop -m immediate``, started again 5 s later;
3. every process of the PostgreSQL cluster SIGSTOPped for 10 s, then SIGCONT;
4. Redis SIGKILLed for 10 s, then started again on its port (backend ``OPTIONS["REDIS"]``);
5. one of two pools (supervisor and children) SIGSTOPped for ``LEASE_SECONDS + 3`` s;
6. SIGTERM to a supervisor running 2 s jobs, with a ``--grace`` that covers them and one
   that does not, then a fresh pool finishes the rest;
7. poison jobs (``os._exit``, SIGKILL of its own process, a memory hog, a job stuck in C
   past its timeout, a return value with a NUL) among plain jobs.

Columns and bars: see ``bench/README.md``. The exit code is 1 when a bar is broken.
The code is in the ``bench/chaoslib`` package (one module per concern, see its
``__init__``); this file only puts ``bench`` on ``sys.path`` and calls its ``main``.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = str(Path(__file__).resolve().parent)
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)

from chaoslib.cli import main  # noqa: E402  (needs the bench directory on sys.path)

if __name__ == "__main__":
    raise SystemExit(main())
