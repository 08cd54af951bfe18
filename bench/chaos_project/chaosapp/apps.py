from django.apps import AppConfig


class ChaosAppConfig(AppConfig):
    name = "chaosapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.tasks.signals import task_started

        from chaosapp.tasks import mark_start

        task_started.connect(mark_start)
