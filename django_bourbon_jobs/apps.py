from django.apps import AppConfig


class BourbonJobsConfig(AppConfig):
    name = "django_bourbon_jobs"
    label = "bourbon_jobs"
    verbose_name = "Background jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_bourbon_jobs import checks, conf, webhooks  # noqa: F401  (registers checks and receivers)
