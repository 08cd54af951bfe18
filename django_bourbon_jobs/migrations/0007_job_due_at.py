"""``Job.run_after`` keeps what was dispatched (``None`` when nothing was); the claim reads ``due_at``.

Until now ``run_after`` was set to the enqueue time when none was given, and
each retry moved it to the retry's time. Existing rows get ``due_at`` from
``run_after``; a ``run_after`` equal to the enqueue time is what the backend
wrote for "none given", and becomes ``None``. (A retried job's original
``run_after`` was overwritten then and cannot be recovered.)
"""

import django.utils.timezone
from django.db import migrations, models


def split_run_after(apps, schema_editor):
    Job = apps.get_model("bourbon_jobs", "Job")
    jobs = Job.objects.using(schema_editor.connection.alias)
    jobs.update(due_at=models.F("run_after"))
    jobs.filter(run_after=models.F("enqueued_at")).update(run_after=None)


def join_run_after(apps, schema_editor):
    Job = apps.get_model("bourbon_jobs", "Job")
    jobs = Job.objects.using(schema_editor.connection.alias)
    jobs.update(run_after=models.F("due_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("bourbon_jobs", "0006_job_attempt_started"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="job", name="bourbon_job_claim"),
        migrations.AddField(
            model_name="job",
            name="due_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.AlterField(
            model_name="job",
            name="run_after",
            field=models.DateTimeField(
                blank=True,
                help_text="The earliest time to run the job, as dispatched (Django's Task.run_after); "
                "empty: as soon as possible.",
                null=True,
            ),
        ),
        migrations.RunPython(split_run_after, join_run_after),
        migrations.AlterField(
            model_name="job",
            name="due_at",
            field=models.DateTimeField(
                default=django.utils.timezone.now,
                help_text="When the job is next due: run_after or the enqueue time, then each retry's time. "
                "Workers claim by this, never before it.",
            ),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                models.OrderBy(models.F("priority"), descending=True),
                models.F("due_at"),
                models.F("id"),
                condition=models.Q(("status", "queued")),
                name="bourbon_job_claim",
            ),
        ),
    ]
