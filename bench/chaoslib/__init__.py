"""The chaos run of ``manage.py runworkers``, behind ``bench/chaos.py``.

One module per concern: ``config`` (paths and fixed numbers, the log line), ``processes``
(pids, signals, clean-up), ``services`` (the private PostgreSQL cluster and redis-server),
``db`` and ``records`` (the harness's Django, what the tables say), ``jobs`` (dispatching,
open jobs), ``pools`` (``runworkers`` commands), ``harness`` (what a scenario is handed),
``rows``, ``stories`` and ``measure`` (counting and the bars), ``kills``, ``outages``,
``pool_faults`` and ``poison`` (the scenarios' bodies), ``scenarios`` (their table and how
one is run), ``report`` (table, details, JSON) and ``cli`` (options and ``main``).
"""
