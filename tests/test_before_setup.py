"""Declaring a task must not need the app registry: Django imports apps' modules before it is ready."""

import subprocess
import sys

from tests.conftest import ROOT, subprocess_env

EARLY_TASK = """
import sys

import django_bourbon_jobs
from django.tasks import task


@task(max_attempts=3, queue_name="emails")
def declared_early(payload):
    return payload


loaded = sorted(name for name in sys.modules if name.startswith("django_bourbon_jobs."))
assert "django_bourbon_jobs.models" not in loaded, loaded

import django

django.setup()

from django_bourbon_jobs.backends import DatabaseBackend
from django_bourbon_jobs.tasks import BourbonTask

assert isinstance(declared_early, BourbonTask), type(declared_early)
assert isinstance(declared_early.get_backend(), DatabaseBackend)
assert (declared_early.get_max_attempts(), declared_early.queue_name) == (3, "emails")
print("declared before setup")
"""


def test_a_task_is_declared_before_django_setup_without_the_registry() -> None:
    done = subprocess.run(
        [sys.executable, "-c", EARLY_TASK],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.strip() == "declared before setup"
