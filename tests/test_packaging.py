"""The wheel carries the admin's templates and static files, not only the Python modules."""

import tomllib
from pathlib import Path

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
    import subprocess
    import sys

    probe = (
        "import sys, django_bourbon_jobs as b; "
        "loaded = sorted(m for m in sys.modules if m.startswith('django_bourbon_jobs.')); "
        "assert loaded == [], loaded"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
