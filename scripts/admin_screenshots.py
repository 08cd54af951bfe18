"""Regenerate docs/img/admin-*.png: demo jobs in a throwaway SQLite file, a live server, headless chromium.

    PYTHONPATH=. python scripts/admin_screenshots.py

Needs Debian's ``chromium`` (``/usr/bin/chromium``) and the ``playwright`` package (the ``test``
extra); it never downloads a browser.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"
USERNAME, PASSWORD = "operator", "demo-password"

TRACEBACK = """Traceback (most recent call last):
  File "/srv/shop/django_bourbon_jobs/worker/executor.py", line 158, in run
    return_value = task.call(*job.args, **job.kwargs)
  File "/srv/shop/shop/tasks.py", line {line}, in {function}
    {code}
{exception}: {message}
"""
FAILURES = [
    (
        "shop.tasks.charge_card",
        "payments",
        "shop.payments.CardDeclined",
        "card ending 4242 was declined",
        41,
        "gateway.charge(order.total, order.card_token)",
    ),
    (
        "shop.tasks.charge_card",
        "payments",
        "shop.payments.CardDeclined",
        "card ending 0005 was declined",
        41,
        "gateway.charge(order.total, order.card_token)",
    ),
    *[
        (
            "shop.tasks.sync_inventory",
            "default",
            "requests.exceptions.ConnectTimeout",
            "HTTPSConnectionPool(host='erp.internal', port=443): connect timeout=10",
            63,
            "response = erp.get(url)",
        )
    ]
    * 3,  # the same failure three times: the failures view groups them with a count
    (
        "shop.tasks.transcode_video",
        "videos",
        "builtins.KeyError",
        "'video_id'",
        22,
        'video_id = payload["video_id"]',
    ),
    (
        "shop.tasks.send_welcome_email",
        "emails",
        "smtplib.SMTPRecipientsRefused",
        "{'bob@example.invalid': (550, b'No such user')}",
        15,
        "mail.send(to=payload['email'])",
    ),
]


def configure() -> str:
    db = Path(tempfile.mkdtemp(prefix="bourbon-shots-")) / "demo.sqlite3"
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["BOURBON_TEST_DB_NAME"] = str(db)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return str(db)


def error(exception: str, message: str, line: int, code: str, task: str, attempt: int, at: datetime) -> dict:
    function = task.rsplit(".", 1)[1]
    return {
        "exception_class_path": exception,
        "message": message,
        "traceback": TRACEBACK.format(
            line=line, function=function, code=code, exception=exception.rsplit(".", 1)[1], message=message
        ),
        "worker_id": f"web-{1 + attempt % 2}-{4100 + attempt}-k3x9qa",
        "attempt": attempt,
        "at": at.isoformat(),
    }


def demo_data() -> str:
    """About 400 jobs in the last hour, seven failures, three workers (one stale); returns a failure's id."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from django_bourbon_jobs.models import Job, JobStatus, Worker

    rng = random.Random(7)
    now = timezone.now()
    user = get_user_model().objects.create_superuser(USERNAME, "ops@example.com", PASSWORD)
    tasks = [
        ("shop.tasks.send_welcome_email", "emails"),
        ("shop.tasks.transcode_video", "videos"),
        ("shop.tasks.sync_inventory", "default"),
    ]
    jobs = []
    for minute in range(60):
        for _ in range(rng.randint(2, 9) + (6 if 20 < minute < 32 else 0)):
            task, queue = rng.choice(tasks)
            finished = now - timedelta(minutes=minute, seconds=rng.randint(0, 59))
            started = finished - timedelta(milliseconds=rng.randint(40, 9000))
            jobs.append(
                Job(
                    task_path=task,
                    queue_name=queue,
                    status=JobStatus.SUCCEEDED,
                    attempts=1,
                    enqueued_at=started - timedelta(seconds=1),
                    due_at=started,
                    started_at=started,
                    last_attempted_at=started,
                    finished_at=finished,
                    return_value={"ok": True},
                )
            )
    for index in range(25):
        task, queue = rng.choice(tasks)
        jobs.append(
            Job(
                task_path=task,
                queue_name=queue,
                enqueued_at=now - timedelta(minutes=index % 9),
                due_at=now - timedelta(minutes=index % 9),
                kwargs={"n": index},
            )
        )
    Job.objects.bulk_create(jobs)

    workers = [
        Worker.objects.create(id="web-1-4101-k3x9qa", hostname="web-1", pid=4101, queues=[], threads=4),
        Worker.objects.create(
            id="web-2-4102-k3x9qa", hostname="web-2", pid=4102, queues=["videos"], threads=2
        ),
        Worker.objects.create(
            id="batch-1-977-p0q2ls",
            hostname="batch-1",
            pid=977,
            queues=["default"],
            last_heartbeat_at=now - timedelta(minutes=4),
        ),
    ]
    for worker, task in [
        (workers[0], "shop.tasks.send_welcome_email"),
        (workers[1], "shop.tasks.transcode_video"),
    ]:
        Job.objects.create(
            task_path=task,
            queue_name="videos" if "video" in task else "emails",
            status=JobStatus.RUNNING,
            attempts=1,
            worker_id=worker.pk,
            enqueued_at=now,
            due_at=now,
            started_at=now,
            last_attempted_at=now,
            kwargs={"video_id": 7},
        )

    shown = None
    for index, (task, queue, exception, message, line, code) in enumerate(FAILURES):
        finished = now - timedelta(minutes=3 + index * 7)
        attempts = 3
        errors = [
            error(
                exception,
                message,
                line,
                code,
                task,
                attempt,
                finished - timedelta(seconds=30 * (attempts - attempt)),
            )
            for attempt in range(1, attempts + 1)
        ]
        job = Job.objects.create(
            task_path=task,
            queue_name=queue,
            status=JobStatus.FAILED,
            attempts=attempts,
            max_attempts=attempts,
            enqueued_at=finished - timedelta(minutes=2),
            due_at=finished - timedelta(seconds=1),
            started_at=finished - timedelta(seconds=61),
            last_attempted_at=finished - timedelta(seconds=1),
            finished_at=finished,
            worker_id=errors[-1]["worker_id"],
            errors=errors,
            dispatched_by=user,
            kwargs={"order_id": 1000 + index, "note": "<b>not markup</b>"},
        )
        shown = shown or job
    assert shown is not None
    return str(shown.pk)


def screenshots(base_url: str, job_id: str) -> None:
    from playwright.sync_api import sync_playwright

    from tests.browser import launch

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(base_url=base_url, viewport={"width": 1500, "height": 800})
        # The admin's navigation sidebar stays closed: more room for the list.
        page.add_init_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
        page.goto("/admin/login/")
        page.fill("#id_username", USERNAME)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/")
        page.goto("/admin/bourbon_jobs/job/failures/")
        page.screenshot(path=OUT / "admin-failures.png", full_page=True)
        page.goto(f"/admin/bourbon_jobs/job/{job_id}/change/")
        page.screenshot(path=OUT / "admin-job.png", full_page=True)
        page.goto("/admin/bourbon_jobs/job/dashboard/")
        page.screenshot(path=OUT / "admin-dashboard.png", full_page=True)
        browser.close()


def main() -> None:
    configure()
    job_id = demo_data()
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.db import connections
    from django.test.testcases import LiveServerThread

    connections.close_all()
    server = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    try:
        OUT.mkdir(parents=True, exist_ok=True)
        screenshots(f"http://127.0.0.1:{server.port}", job_id)
    finally:
        server.terminate()
    for name in ("admin-failures.png", "admin-job.png", "admin-dashboard.png"):
        print(OUT / name)


if __name__ == "__main__":
    main()
