"""The side effect every plain chaos job leaves: one row per execution of its code."""

from django.db import models


class Execution(models.Model):
    """Written by the job itself, on its own thread and connection, when an attempt starts.

    ``finished_at`` is set when the job's code has run to its end (before the
    worker writes the job's outcome).
    """

    job_id = models.UUIDField(db_index=True)
    attempt = models.PositiveIntegerField()
    worker_id = models.CharField(max_length=64)
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.job_id} attempt {self.attempt} on {self.worker_id}"
