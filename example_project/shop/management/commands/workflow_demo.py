"""``manage.py workflow_demo``: the worked example of ``docs/workflows.md``, run and checked.

Dispatches three workflows (a feed import graph, a group of thumbnails with one callback,
and a charge whose receipt must not go out when it fails), runs ``runworkers --processes 2
--burst``, and prints each workflow and its steps.
"""

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from django_bourbon_jobs.workflows import Workflow, chain, get_workflow, group
from shop.workflow_tasks import (
    charge_card,
    fetch_feed,
    index_items,
    notify_owner,
    parse_feed,
    resize,
    send_receipt,
    thumbnails_ready,
)


def dispatch_feed_import():
    wf = Workflow("import-feed")
    wf.add("fetch", fetch_feed, {"url": "https://example.com/feed.xml"})
    wf.add("parse", parse_feed, after=["fetch"])  # gets fetch's return value
    wf.add("index", index_items, after=["parse"])  # gets parse's
    wf.add("notify", notify_owner, {"user_id": 7}, after=["parse", "index"])
    return wf.dispatch()


def dispatch_thumbnails():
    sizes = group(*[(resize, {"w": w}) for w in (100, 200, 400)], name="thumbnails")
    return sizes.then(thumbnails_ready, {"user_id": 7}).dispatch()


def dispatch_checkout():
    return chain((charge_card, {"card": "declined", "amount": 42}), send_receipt, name="checkout").dispatch()


class Command(BaseCommand):
    help = "Run docs/workflows.md's worked example: three workflows, two worker processes, the results."

    def handle(self, *args, **options):
        call_command("migrate", verbosity=0, interactive=False)
        runs = [dispatch_feed_import(), dispatch_thumbnails(), dispatch_checkout()]
        for run in runs:
            self.stdout.write(f"dispatched {run.name}: {run.id} {run.status}")
        self.stdout.flush()  # before the workers fork and log to stderr
        call_command("runworkers", processes=2, burst=True)
        finals = {run.name: get_workflow(run.id) for run in runs}
        for run in finals.values():
            self.stdout.write(f"{run.name}: {run.status} ({run.steps_finished}/{run.step_count} steps)")
            for name, step in run.steps.items():
                value = step.return_value if step.status == "SUCCESSFUL" else ""
                self.stdout.write(f"   {name:12} {step.status:10} {value}")
        self._check(finals)
        self.stdout.write(self.style.SUCCESS("Workflow demo finished: every workflow ended as expected."))

    def _check(self, finals):
        notify = finals["import-feed"].steps["notify"].return_value
        expected = {
            "import-feed": (
                "succeeded",
                notify == {"user_id": 7, "message": "3 new: Kettle, Teapot, Strainer"},
            ),
            "thumbnails": (
                "succeeded",
                finals["thumbnails"].steps["then"].return_value["widths"] == [100, 200, 400],
            ),
            "checkout": ("failed", finals["checkout"].steps["2-send_receipt"].status == "FAILED"),
        }
        for name, (status, ok) in expected.items():
            if finals[name].status != status or not ok:
                raise CommandError(f"{name}: expected {status}, got {finals[name].status}")
