"""The API in a project built from the docs alone (tests/fresh_project/), in a process of its own.

DRF and drf-spectacular read their settings when the views are imported, so a project without
``REST_FRAMEWORK`` can only be tried in a new interpreter.
"""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, once_per_run

pytestmark = [pytest.mark.slow, once_per_run]

PYTEST_OPTIONS = ["--ds=tests.fresh_project.settings", "-p", "no:randomly", "-p", "no:cacheprovider", "-q"]


def test_a_project_built_from_the_docs_works(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "BOURBON_"))}
    env.update(PYTHONPATH=str(ROOT), BOURBON_FRESH_DB=str(tmp_path / "fresh.sqlite3"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/fresh_project/scenarios.py", *PYTEST_OPTIONS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
