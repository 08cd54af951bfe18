"""Dramatiq actors for the benchmark: Redis broker, results in Redis (Results middleware).

Worker: ``dramatiq benchapp.dramatiq_actors -p 2 -t 1`` (run by driver.py).
"""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

from benchapp import plain

_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
broker = RedisBroker(url=_url)
broker.add_middleware(Results(backend=RedisBackend(url=_url)))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop", store_results=True, max_retries=0)
def noop(payload=None):
    return None


@dramatiq.actor(actor_name="stamp", store_results=True, max_retries=0)
def stamp(token=""):
    return plain.stamp(token)
