"""The test project as an ASGI application (``tests/test_sse.py`` serves it with uvicorn)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
application = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (after the settings are set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from django_bourbon_jobs.api.websocket import websocket_urlpatterns  # noqa: E402
from django_bourbon_jobs.asgi import LimitRequestBodies  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": LimitRequestBodies(application),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
