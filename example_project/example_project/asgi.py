"""The example project under ASGI (``uvicorn example_project.asgi:application``).

``LimitRequestBodies`` refuses a jobs API dispatch body over the limit before Django reads it.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
application = get_asgi_application()

from django_bourbon_jobs.asgi import LimitRequestBodies  # noqa: E402  (after Django is set up)

application = LimitRequestBodies(application)
