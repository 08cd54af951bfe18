"""The two benchmark tasks, shared by every system (all use Django's own ``django.tasks``)."""

import time

from django.tasks import task


@task
def noop(payload=None):
    return None


@task
def stamp():
    """Return the wall-clock time at which a worker started running this job."""
    return time.time()
