"""``manage.py demo``: migrate, dispatch three jobs, run a burst of workers, print the outcomes.

Safe to run again: ``migrate`` is a no-op the second time, and each run
dispatches and reports on its own new jobs.
"""

import json

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.tasks import TaskResultStatus

from django_bourbon_jobs import dispatch_async, get_result
from shop.tasks import send_welcome_email, sync_inventory, transcode_video


class Command(BaseCommand):
    help = "Dispatch a few example jobs, run them with `runworkers --processes 2 --burst`, print the results."

    def handle(self, *args, **options):
        self.stdout.write("1. migrate")
        call_command("migrate", verbosity=0, interactive=False)

        self.stdout.write("2. dispatch three jobs")
        jobs = {
            # The Bourbon way: dispatch_async(task, payload, **options) returns a TaskResult.
            "welcome e-mail (dispatch_async)": dispatch_async(
                send_welcome_email, {"email": "ada@example.com"}
            ),
            # Django's own Tasks API works too: Task.enqueue(*args, **kwargs).
            "video (.enqueue)": transcode_video.enqueue({"video_id": "v42", "formats": ["480p", "1080p"]}),
            # Fails on attempt 1, succeeds on attempt 2; its backoff makes the retry due at once.
            "flaky inventory sync (dispatch_async)": dispatch_async(sync_inventory, {"warehouse": "north"}),
        }
        for label, result in jobs.items():
            self.stdout.write(f"   {label}: job {result.id} {result.status}")

        self.stdout.write("3. runworkers --processes 2 --burst (runs what is due, then exits)")
        self.stdout.flush()  # before the workers fork and log to stderr
        call_command("runworkers", processes=2, burst=True)

        self.stdout.write("4. results")
        finals = {}
        for label, dispatched in jobs.items():
            result = get_result(dispatched.id)
            finals[label] = result
            self.stdout.write(f"   {label}")
            self.stdout.write(f"     task:         {result.task.module_path}")
            self.stdout.write(f"     status:       {result.status}")
            self.stdout.write(f"     attempts:     {result.attempts}")
            if result.status == TaskResultStatus.SUCCESSFUL:
                self.stdout.write(f"     return value: {json.dumps(result.return_value)}")
            self.stdout.write(f"     errors:       {len(result.errors)}")
            for error in result.errors:
                self.stdout.write(f"       - {error.traceback.strip().splitlines()[-1]}")

        self._check(finals)
        self.stdout.write(self.style.SUCCESS("Demo finished: every job ended as expected."))

    def _check(self, finals):
        """Fail loudly if the outcome is not the one the README promises."""
        expected_attempts = [1, 1, 2]
        for (label, result), attempts in zip(finals.items(), expected_attempts, strict=True):
            if result.status != TaskResultStatus.SUCCESSFUL or result.attempts != attempts:
                raise CommandError(
                    f"{label}: expected SUCCESSFUL after {attempts} attempt(s), "
                    f"got {result.status} after {result.attempts}."
                )
            if len(result.errors) != attempts - 1:
                raise CommandError(f"{label}: expected {attempts - 1} error(s), got {len(result.errors)}.")
