"""The test settings without LOGGING, as most projects start: what ``runworkers`` prints by itself."""

from tests.settings import *  # noqa: F403

LOGGING: dict = {}
