"""The dispatch and stream throttles: per user, with safe default rates the project can change the DRF way."""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import UserRateThrottle


class DispatchRateThrottle(UserRateThrottle):
    """Limits ``POST /jobs/`` per user (per IP when anonymous).

    Set ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["bourbon_jobs.dispatch"]``
    (``"100/hour"``, or ``None`` for no limit); without it, :attr:`default_rate`.
    """

    scope = "bourbon_jobs.dispatch"
    default_rate = "60/minute"

    def get_rate(self) -> str | None:
        # Read per request (not at import), so override_settings and reloads apply.
        rates = api_settings.DEFAULT_THROTTLE_RATES
        rate = rates[self.scope] if self.scope in rates else self.default_rate
        return None if rate is None else str(rate)


class StreamRateThrottle(DispatchRateThrottle):
    """Limits how often one user may open ``GET /jobs/<id>/events/`` (reconnects included).

    ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["bourbon_jobs.stream"]``; without it,
    :attr:`default_rate`. How many may be open at once is ``STREAMS_PER_USER``.
    """

    scope = "bourbon_jobs.stream"
    default_rate = "120/minute"
