"""The tasks of ``docs/workflows.md``'s worked example (``manage.py workflow_demo`` runs it).

Each is an ordinary ``@task``: a workflow step is a job like any other.
"""

from django.tasks import task

from django_bourbon_jobs import Fail

FEED = {"https://example.com/feed.xml": ["kettle", "teapot", "strainer"]}
"""Stands in for the network: what fetching each feed URL returns."""


@task(max_attempts=5, timeout=30)
def fetch_feed(payload):
    return {"url": payload["url"], "entries": FEED[payload["url"]]}


@task
def parse_feed(feed):
    """Given no payload of its own, a step waiting for one step gets that step's return value."""
    return [{"title": entry.title(), "source": feed["url"]} for entry in feed["entries"]]


@task
def index_items(items):
    return {"indexed": len(items)}


@task(takes_context=True)
def notify_owner(context, payload):
    """Waits for several steps: their return values are in ``context.dependency_results``."""
    results = context.dependency_results
    titles = [item["title"] for item in results["parse"]]
    return {
        "user_id": payload["user_id"],
        "message": f"{results['index']['indexed']} new: {', '.join(titles)}",
    }


@task
def resize(payload):
    return {"width": payload["w"], "path": f"/media/cat-{payload['w']}.jpg"}


@task(takes_context=True)
def thumbnails_ready(context, payload):
    """The callback after a group: every member's result, by step name."""
    widths = sorted(result["width"] for result in context.dependency_results.values())
    return {"user_id": payload["user_id"], "widths": widths}


@task(max_attempts=3)
def charge_card(payload):
    if payload["card"] == "declined":
        raise Fail("the card was declined")  # fails at once, no retry
    return {"charged": payload["amount"]}


@task
def send_receipt(charge):
    return {"receipt_for": charge["charged"]}
