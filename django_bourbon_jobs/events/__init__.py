"""Job events: one home for telling live readers and idle workers that something changed.

- :mod:`.redis`: the Redis connection (django-redis), the channel names under one
  namespace, the event payload, and the one tracker that logs each outage once;
- :mod:`.publish`: announcing enqueues and job changes, after commit, from one
  publisher thread per process;
- :mod:`.subscribe`: waiting for a job's (or every job's) changes: one Redis
  subscription per process, or one database poller without Redis;
- :mod:`.stream`: the loop every live stream shares (the API's, the dashboard's);
- :mod:`.sse`: the Server-Sent Events wire format, response and stream caps.

**A message only wakes a reader; the database is the truth.** Whatever a reader
sends is what it reads from the database after the wake-up, never what the
message said, so a lost, late or repeated message can delay an update but never
make one wrong; and Redis is never the only copy of anything.
"""
