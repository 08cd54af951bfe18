"""Which callback URLs a job may name: the policy checked at dispatch and again at each delivery.

A callback URL must be ``http(s)``, carry no credentials, and name a host in
``WEBHOOK_ALLOWED_HOSTS`` and a port in ``WEBHOOK_ALLOWED_PORTS``; a host that is
a literal address must be public or in ``WEBHOOK_ALLOWED_NETWORKS``. Delivery
(:mod:`~django_bourbon_jobs.webhooks`) also checks every address a name resolves to.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.exceptions import InvalidCallbackURL


def host_allowed(host: str, allowed: list[str] | tuple[str, ...]) -> bool:
    """``ALLOWED_HOSTS`` matching without the ``"*"`` wildcard: exact, or ``.domain`` and below."""
    host = host.lower().rstrip(".")
    for pattern in (p.lower() for p in allowed):
        if pattern.startswith(".") and (host == pattern[1:] or host.endswith(pattern)):
            return True
        if host == pattern:
            return True
    return False


def check_callback_url(url: str) -> None:
    """Raise :class:`InvalidCallbackURL` unless ``url`` may be called back.

    It must be ``http(s)``, carry no credentials, and name a host in
    ``WEBHOOK_ALLOWED_HOSTS`` and a port in ``WEBHOOK_ALLOWED_PORTS``; and
    ``WEBHOOK_SECRET`` must be set, since unsigned webhooks are never sent.
    """
    conf = get_settings()
    if not conf.WEBHOOK_SECRET:
        raise InvalidCallbackURL("Webhooks are disabled: set BOURBON_JOBS['WEBHOOK_SECRET'].")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError as exc:
        raise InvalidCallbackURL(f"{url!r} is not a valid URL: {exc}.") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidCallbackURL(f"{url!r} is not an http(s) URL with a host.")
    if parts.username is not None or parts.password is not None:
        raise InvalidCallbackURL("Callback URLs must not carry credentials.")
    if not host_allowed(host, tuple(conf.WEBHOOK_ALLOWED_HOSTS)):
        raise InvalidCallbackURL(f"Host {host!r} is not in BOURBON_JOBS['WEBHOOK_ALLOWED_HOSTS'].")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if port not in conf.WEBHOOK_ALLOWED_PORTS:
        raise InvalidCallbackURL(f"Port {port} is not in BOURBON_JOBS['WEBHOOK_ALLOWED_PORTS'].")
    literal = _ip_literal(host)
    if literal is not None and not address_allowed(literal):
        raise InvalidCallbackURL(
            f"{host} is not a public address; list its network in BOURBON_JOBS['WEBHOOK_ALLOWED_NETWORKS']."
        )


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def address_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A public address, or one in ``WEBHOOK_ALLOWED_NETWORKS``."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    networks = [ipaddress.ip_network(network) for network in get_settings().WEBHOOK_ALLOWED_NETWORKS]
    if any(address in network for network in networks):
        return True
    return address.is_global and not address.is_multicast
