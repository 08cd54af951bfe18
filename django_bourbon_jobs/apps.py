from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class BourbonJobsConfig(AppConfig):
    name = "django_bourbon_jobs"
    label = "bourbon_jobs"
    verbose_name = "Background jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_bourbon_jobs import checks, conf, webhooks  # noqa: F401  (registers checks and receivers)

        post_migrate.connect(_sync_periodic_schedules, sender=self)


def _sync_periodic_schedules(using: str, plan: Any = None, **kwargs: Any) -> None:
    """After ``migrate``, the admin lists the schedules the settings declare (unless migrated back)."""
    from django.db import connections, router

    from django_bourbon_jobs.models import PeriodicSchedule
    from django_bourbon_jobs.periodic.sync import sync_settings_schedules

    table = PeriodicSchedule._meta.db_table
    if (
        router.allow_migrate_model(using, PeriodicSchedule)
        and table in connections[using].introspection.table_names()
    ):
        sync_settings_schedules(using)
