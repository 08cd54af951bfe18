from django_bourbon_jobs.backends.database import DatabaseBackend

__all__ = ["DatabaseBackend"]
