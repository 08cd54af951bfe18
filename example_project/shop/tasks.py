"""The shop's background jobs: plain functions decorated with Django's ``@task``.

Because ``TASKS["default"]`` uses ``DatabaseBackend``, ``@task`` also accepts
``max_attempts``, ``timeout`` and ``backoff``. A task must live at module level:
workers import it by its dotted path (``shop.tasks.send_welcome_email``).
Payloads and return values are stored as JSON.
"""

from django.tasks import task


@task(priority=10, queue_name="emails", max_attempts=5, timeout=30)
def send_welcome_email(payload):
    # A real project would call its mail service here.
    return {"sent_to": payload["email"]}


@task(queue_name="videos", timeout=300)
def transcode_video(payload):
    # Stand-in for real work: name the renditions this video would get.
    formats = payload.get("formats") or ["480p", "720p"]
    return {
        "video_id": payload["video_id"],
        "renditions": [f"{payload['video_id']}-{fmt}.mp4" for fmt in formats],
    }


def retry_at_once(exception, task_result):
    """Backoff: seconds until the next attempt (``None`` would mean: do not retry)."""
    return 0


@task(takes_context=True, max_attempts=3, backoff=retry_at_once)
def sync_inventory(context, payload):
    """A flaky job: its first attempt fails, its second succeeds.

    ``context.attempt`` is 1 on the first attempt, 2 on the second, and so on.
    """
    if context.attempt == 1:
        raise ConnectionError(f"warehouse {payload['warehouse']} did not answer (attempt {context.attempt})")
    return {"warehouse": payload["warehouse"], "synced_on_attempt": context.attempt}
