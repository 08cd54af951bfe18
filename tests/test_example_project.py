"""The README's demo: the example project migrates, dispatches, runs workers and reports."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, once_per_run

pytestmark = [pytest.mark.slow, once_per_run]


def test_demo_runs_every_job_to_its_expected_end(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["BOURBON_EXAMPLE_DB"] = str(tmp_path / "demo.sqlite3")
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "example_project/manage.py", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Demo finished: every job ended as expected." in done.stdout
    assert "synced_on_attempt" in done.stdout


def test_workflow_demo_runs_the_documented_example(tmp_path):
    """docs/workflows.md's worked example, as ``manage.py workflow_demo`` runs it."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["BOURBON_EXAMPLE_DB"] = str(tmp_path / "demo.sqlite3")
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "example_project/manage.py", "workflow_demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Workflow demo finished: every workflow ended as expected." in done.stdout
    assert (
        "notify       SUCCESSFUL {'user_id': 7, 'message': '3 new: Kettle, Teapot, Strainer'}" in done.stdout
    )
