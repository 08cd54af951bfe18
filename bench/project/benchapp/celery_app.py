"""Celery app for the benchmark: Redis broker, results in PostgreSQL (django-celery-results).

Worker: ``celery -A benchapp.celery_app worker -c 2 --pool prefork`` (run by driver.py).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchproject.settings")

from celery import Celery

from benchapp import plain

app = Celery("bench")
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.task(name="bench.noop")
def noop(payload=None):
    return None


@app.task(name="bench.stamp")
def stamp(token=""):
    return plain.stamp(token)
