"""Run as ``python -m tests.security.flood_setup N``: N users, each with a session and a job that waits.

Prints ``[{"cookie": ..., "job_id": ...}, ...]`` as JSON; the stream flood test opens its
streams with these (a session cookie costs no password hash per request).
"""

import json
import sys
from datetime import timedelta

import django


def main(count: int) -> None:
    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils import timezone

    from django_bourbon_jobs.models import Job

    people = []
    later = timezone.now() + timedelta(hours=1)
    for n in range(count):
        user = get_user_model().objects.create_user(f"flooder{n}")
        session = SessionStore()
        session["_auth_user_id"] = str(user.pk)
        session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        session["_auth_user_hash"] = user.get_session_auth_hash()
        session.create()
        job = Job.objects.create(
            task_path="tests.tasks.echo", due_at=later, enqueued_at=timezone.now(), dispatched_by=user
        )
        people.append({"cookie": f"sessionid={session.session_key}", "job_id": str(job.pk)})
    print(json.dumps(people))


if __name__ == "__main__":
    main(int(sys.argv[1]))
