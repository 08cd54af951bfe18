"""The two benchmark tasks for the systems built on Django's own ``django.tasks``."""

from django.tasks import task

from benchapp import plain


@task
def noop(payload=None):
    return None


@task
def stamp(token=""):
    """Return the wall-clock time at which a worker started running this job."""
    return plain.stamp(token)
