"""What is shipped: a wheel and an sdist that install and run, and a test run that says what it skipped."""

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import once_per_run

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "django_bourbon_jobs"


def test_package_data_covers_every_template_and_static_file():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["django_bourbon_jobs"]
    shipped = {path for pattern in patterns for path in PACKAGE.glob(pattern) if path.is_file()}
    needed = {path for folder in ("templates", "static") for path in (PACKAGE / folder).rglob("*")}
    needed = {path for path in needed if path.is_file()}
    assert needed, "no templates or static files found"
    assert needed <= shipped, sorted(str(p.relative_to(PACKAGE)) for p in needed - shipped)


def test_importing_the_package_loads_nothing_until_a_name_is_used():
    """Django imports each app in INSTALLED_APPS before the registry is ready."""
    probe = (
        "import sys, django_bourbon_jobs as b; "
        "loaded = sorted(m for m in sys.modules if m.startswith('django_bourbon_jobs.')); "
        "assert loaded == [], loaded"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr + done.stdout


@once_per_run
def test_without_chromium_the_browser_tests_say_so_at_the_end():
    env = {**os.environ, "BOURBON_TEST_CHROMIUM": "/nonexistent/chromium", "PYTHONPATH": str(ROOT)}
    done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *NO_CACHE, BROWSER_TESTS], env=env)
    summary = done.stdout.splitlines()
    assert any("browser tests NOT run" in line for line in summary), done.stdout
    assert any("apt-get install chromium" in line and "skipped" in line for line in summary), done.stdout


NO_CACHE = ("-p", "no:cacheprovider")
BROWSER_TESTS = "tests/test_admin_browser.py"
SOURCES = ("pyproject.toml", "README.md", "django_bourbon_jobs")
PROJECT = {
    "settings.py": """
SECRET_KEY = "wheel-test"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_bourbon_jobs"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
TASKS = {"default": {"BACKEND": "django_bourbon_jobs.backends.DatabaseBackend"}}
""",
    "jobs.py": """
from django.tasks import task


@task
def double(n):
    return 2 * n
""",
    "check.py": """
import django

django.setup()
import django_bourbon_jobs
from django_bourbon_jobs import get_result
from jobs import double

print(django_bourbon_jobs.__file__)
if __import__("sys").argv[1] == "dispatch":
    print(double.enqueue(21).id)
else:
    print(get_result(__import__("sys").argv[2]).return_value)
""",
}


@once_per_run
@pytest.mark.slow
def test_the_wheel_installs_into_a_clean_venv_and_runs_a_job(tmp_path):
    """``python -m build`` as docs/getting-started.md shows it, then the wheel alone in a new venv."""
    dist = build(tmp_path)
    wheel, sdist = one(dist, "*.whl"), one(dist, "*.tar.gz")
    assert shipped(zipfile.ZipFile(wheel).namelist()) and shipped(tarfile.open(sdist).getnames())
    python = clean_venv(tmp_path / "venv")
    run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            "--ignore-installed",
            str(wheel),
        ]
    )
    project = tmp_path / "project"
    project.mkdir()
    for name, text in PROJECT.items():
        (project / name).write_text(text)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "DJANGO_", "BOURBON"))
    }
    env.update(DJANGO_SETTINGS_MODULE="settings", PYTHONPATH=str(project))
    in_project = {"env": env, "cwd": project}
    run([str(python), "-m", "django", "migrate", "-v", "0"], **in_project)
    installed, job_id = run([str(python), "check.py", "dispatch"], **in_project).stdout.split()
    assert installed.startswith(str(tmp_path / "venv")), installed
    run([str(python), "-m", "django", "runworkers", "--processes", "1", "--burst"], **in_project)
    assert run([str(python), "check.py", "result", job_id], **in_project).stdout.split()[-1] == "42"


def build(tmp_path: Path) -> Path:
    """Build from a copy of the sources, so the checkout gets no build/ or egg-info."""
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(source)])
    return tmp_path / "dist"


def one(folder: Path, pattern: str) -> Path:
    [found] = folder.glob(pattern)
    return found


def shipped(names: list[str]) -> bool:
    """The admin's templates and static files and every migration are in the archive."""
    wanted = [
        "django_bourbon_jobs/templates/admin/bourbon_jobs/job/timeline.html",
        "django_bourbon_jobs/static/bourbon_jobs/admin.css",
        "django_bourbon_jobs/migrations/0001_initial.py",
        "django_bourbon_jobs/py.typed",
    ]
    return all(any(name.endswith(path) for name in names) for path in wanted)


def clean_venv(folder: Path) -> Path:
    """A new venv with pip; its dependencies (Django...) come from this one's site-packages, after its own."""
    run([sys.executable, "-m", "venv", str(folder)])
    python = folder / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout
    (Path(purelib.strip()) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def run(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300, **options)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done
