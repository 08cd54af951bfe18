"""The test settings plus a `TASKS` alias whose backend is not installed here (a worker image without it)."""

from tests.settings import *  # noqa: F403
from tests.settings import TASKS

TASKS = {"elsewhere": {"BACKEND": "not_installed_here.backends.Backend"}, **TASKS}
