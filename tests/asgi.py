"""The test project as an ASGI application (``tests/test_sse.py`` serves it with uvicorn)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
application = get_asgi_application()

from django_bourbon_jobs.asgi import LimitRequestBodies  # noqa: E402  (after the settings are set up)

application = LimitRequestBodies(application)
