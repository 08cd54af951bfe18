"""Plain functions behind every system's ``noop`` and ``stamp`` (no Django needed).

``stamp(token)`` takes ``time.time()`` first thing, then writes it to the benchmark's own
table ``bench_stamp`` in PostgreSQL (one autocommit connection per worker process), so
that pickup latency is read back the same way for every system, including those that
keep no results (django-vtasks) or keep them in Redis (RQ, Dramatiq).
"""

import os
import time

_conn = None
_conn_pid = None


def noop(payload=None):
    return None


def _connection():
    global _conn, _conn_pid
    if _conn is None or _conn_pid != os.getpid() or _conn.closed:
        import psycopg

        _conn = psycopg.connect(
            host="127.0.0.1",
            port=5432,
            user="postgres",
            dbname=os.environ.get("BENCH_DB", "postgres"),
            autocommit=True,
        )
        _conn_pid = os.getpid()
    return _conn


def stamp(token=""):
    """Record (and return) the wall-clock time at which a worker started this job."""
    t = time.time()
    _connection().execute("INSERT INTO bench_stamp (token, t) VALUES (%s, %s)", (str(token), t))
    return t
