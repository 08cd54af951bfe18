"""The admin's limits and circuits: a read-only list, open circuits on the dashboard, closing one by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from django_bourbon_jobs.models import Limit
from django_bourbon_jobs.signals import circuit_closed
from tests.test_admin import DASHBOARD, action, messages_of, staff

pytestmark = pytest.mark.django_db

LIMITS = reverse("admin:bourbon_jobs_limit_changelist")


def open_circuit(key="task:shop.tasks.charge", **fields):
    values = {
        "breaker_threshold": 5,
        "breaker_cooldown": 30.0,
        "failures": 5,
        "opened_at": timezone.now(),
        "open_until": timezone.now() + timedelta(seconds=30),
        **fields,
    }
    return Limit.objects.create(key=key, **values)


def test_the_list_shows_limits_rates_and_circuit_states(admin_client):
    Limit.objects.create(key="queue:emails", concurrency=5, rate_limit=10, rate_window=1.0, running=2)
    Limit.objects.create(key="task:shop.tasks.report", rate_limit=100, rate_window=60.0)
    open_circuit()
    Limit.objects.create(key="task:shop.tasks.ship", breaker_threshold=3, breaker_cooldown=10.0)
    html = admin_client.get(LIMITS).content.decode()
    assert "10/s" in html and "100/m" in html
    assert "open for " in html
    assert ">closed<" in html
    shown = admin_client.get(LIMITS, {"circuit": "open"}).context["cl"].result_list
    assert [row.key for row in shown] == ["task:shop.tasks.charge"]


def test_limits_cannot_be_added_edited_or_deleted(admin_client):
    row = open_circuit()
    assert admin_client.get(reverse("admin:bourbon_jobs_limit_add")).status_code == 403
    change = reverse("admin:bourbon_jobs_limit_change", args=[row.pk])
    assert admin_client.get(change).status_code == 200
    admin_client.post(change, {"concurrency": 1})
    assert Limit.objects.get(pk=row.pk).concurrency is None
    assert admin_client.get(reverse("admin:bourbon_jobs_limit_delete", args=[row.pk])).status_code == 403


def test_an_operator_closes_a_circuit_and_it_is_announced(admin_client):
    row = open_circuit()
    closed = []

    def receiver(**kwargs):
        closed.append((kwargs["key"], kwargs["reason"]))

    circuit_closed.connect(receiver)
    try:
        response = action(admin_client, LIMITS, "close_circuits", [row])
    finally:
        circuit_closed.disconnect(receiver)
    assert messages_of(response) == ["Closed 1 circuit."]
    assert Limit.objects.get(pk=row.pk).open_until is None
    assert closed == [(row.key, "closed by hand")]


def test_closing_circuits_needs_its_permission(client, django_user_model):
    row = open_circuit()
    user = staff(django_user_model, "view_limit")
    client.force_login(user)
    response = client.get(LIMITS)
    assert "close_circuits" not in response.context["cl"].model_admin.get_actions(response.wsgi_request)
    action(client, LIMITS, "close_circuits", [row])
    assert Limit.objects.get(pk=row.pk).open_until is not None
    user.user_permissions.add(Permission.objects.get(codename="close_circuit"))
    assert messages_of(action(client, LIMITS, "close_circuits", [row])) == ["Closed 1 circuit."]


def test_the_dashboard_shows_open_circuits(admin_client):
    open_circuit()
    open_circuit(key="task:shop.tasks.trial", open_until=timezone.now() - timedelta(seconds=1))
    Limit.objects.create(key="task:shop.tasks.fine", breaker_threshold=3, breaker_cooldown=10.0)
    response = admin_client.get(DASHBOARD)
    rows = {row.key: row.state for row in response.context["open_circuits"]}
    assert set(rows) == {"task:shop.tasks.charge", "task:shop.tasks.trial"}
    assert rows["task:shop.tasks.trial"] == "half-open: trial due"
    link = reverse("admin:bourbon_jobs_limit_change", args=["task:shop.tasks.charge"])
    assert link in response.content.decode()


def test_the_dashboard_says_when_no_circuit_is_open(admin_client):
    assert "No open circuits" in admin_client.get(DASHBOARD).content.decode()
