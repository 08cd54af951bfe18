"""Workflow steps in the store: writing a workflow, releasing steps, failing them onward, and the counts.

**The one lock.** Every transaction that changes a workflow's steps other than
finishing its own running ones (release a step, cancel one, retry the workflow)
first takes the workflow's row lock (``SELECT ... FOR UPDATE`` of
:class:`~django_bourbon_jobs.models.Workflow`). So the outcome writers of many
workers, the rescuer, a cancel and a retry change one workflow's counters one
after the other, and each sees what the one before committed. A worker takes it
after writing its outcomes (the running rows it holds), and nobody else takes a
running row after a workflow lock: no two of them wait on each other in a circle.

**Releasing.** A waiting step's ``WorkflowStep.waiting_for`` counts its
dependencies not yet finished. The transaction that stores a dependency's
outcome counts its dependents down, and those that reach 0 become ``queued``:
the release can never be lost between the two. A dependency that failed (or was
cancelled) cancels its dependents instead, and theirs in turn, unless a
dependent says ``on_failure="continue"``, which counts it down as a success would.
A step with ``takes_result`` gets its one dependency's return value as its
payload when it is released. A group of 10,000 with one callback costs each
outcome batch one update of the callback's counter, not a query per step.

Batches without workflow steps never come here (:meth:`PortableStore.record_outcomes`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import Exists, F, OuterRef, Subquery

from django_bourbon_jobs.models import (
    FINISHED_STATUSES,
    PENDING_STATUSES,
    Job,
    JobStatus,
    OnFailure,
    StepDependency,
    Workflow,
    WorkflowStatus,
    WorkflowStep,
)
from django_bourbon_jobs.store import statements

CHUNK = 1000
"""Ids per ``IN (...)`` list: SQLite limits a statement's parameters."""

Notify = Callable[[str, str], None]
"""``notify(using, queue_name)``: wake the queue's workers once the transaction commits."""

RETRY_FIELDS = {
    "attempts": 0,
    "finished_at": None,
    "lease_expires_at": None,
    "worker_id": "",
    "progress": None,
    "cancel_requested_at": None,
}
"""What a retried step starts again with (as ``JobQuerySet.retry`` does for a job)."""


@dataclass
class StepChanges:
    """What one transaction did to workflow steps beyond the outcomes it wrote, to announce once committed."""

    released: list[Any] = field(default_factory=list)
    """Job ids of steps that became ``queued``."""
    cancelled: list[Any] = field(default_factory=list)
    """Job ids of steps cancelled because a dependency failed (or by a cancel)."""
    held: list[Any] = field(default_factory=list)
    """Job ids of released steps left waiting: another job holds their unique key."""
    workflows: list[Workflow] = field(default_factory=list)
    """The workflows whose counts changed, as stored now."""
    queues: set[str] = field(default_factory=set)
    """The queues of the released steps."""

    def __bool__(self) -> bool:
        return bool(self.released or self.cancelled or self.held or self.workflows)


def chunks(ids: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def lock_workflows(using: str, ids: Iterable[Any]) -> dict[Any, Workflow]:
    """Lock the workflows' rows, in id order (one order for everybody); by id."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = Workflow.objects.db_manager(using).select_for_update().filter(pk__in=wanted).order_by("pk")
    return {workflow.pk: workflow for workflow in rows}


@dataclass
class Settling:
    """One transaction's changes to the steps of the workflows it has locked."""

    using: str
    now: datetime
    workflows: dict[Any, Workflow]
    notify: Notify
    changes: StepChanges = field(default_factory=StepChanges)
    finished: Counter[Any] = field(default_factory=Counter)
    failed: Counter[Any] = field(default_factory=Counter)

    def finish(self, steps: Iterable[tuple[Any, str, Any]], counted: bool = False) -> StepChanges:
        """``(job id, final status, workflow id)`` of steps just finished: release, fail onward, count.

        ``counted``: their workflows' counts include them already (:func:`count_finished`).
        """
        succeeded: list[Any] = []
        ended: list[Any] = []
        for job_id, status, workflow_id in steps:
            if not counted:
                self.count(workflow_id, status)
            (succeeded if status == JobStatus.SUCCEEDED else ended).append(job_id)
        if succeeded:
            self.count_down_after(succeeded)
        self.fail_onward(ended)
        self.save_counts()
        return self.changes

    def count(self, workflow_id: Any, status: str) -> None:
        self.finished[workflow_id] += 1
        if status != JobStatus.SUCCEEDED:
            self.failed[workflow_id] += 1

    def dependents(self, ids: Sequence[Any]) -> list[tuple[Any, str, Any]]:
        """``(step id, its on_failure, its workflow id)`` for every edge out of ``ids``."""
        edges: list[tuple[Any, str, Any]] = []
        for chunk in chunks(ids):
            rows = StepDependency.objects.db_manager(self.using).filter(after_id__in=chunk)
            edges += rows.values_list("step_id", "step__on_failure", "step__workflow_id")
        return edges

    def count_down_after(self, succeeded: Sequence[Any]) -> None:
        """Count down every step waiting for these, one statement per chunk; release those at 0."""
        connection = connections[self.using]
        prep = Job._meta.pk.get_db_prep_value  # type: ignore[union-attr]
        to_python = Job._meta.pk.to_python  # type: ignore[union-attr]
        ready: list[Any] = []
        for chunk in chunks(succeeded):
            with connection.cursor() as cursor:
                cursor.execute(statements.count_down_sql(len(chunk)), [prep(pk, connection) for pk in chunk])
                rows = cursor.fetchall()
            ready += [to_python(step) for step, waiting_for, _ in rows if waiting_for == 0]
        if ready:
            self.release(ready)

    def count_down(self, counts: Counter[Any]) -> None:
        """Count each step down by its number; release those that reach 0."""
        steps = WorkflowStep.objects.db_manager(self.using)
        by_amount: dict[int, list[Any]] = defaultdict(list)
        for step, amount in counts.items():
            by_amount[amount].append(step)
        for amount, ids in by_amount.items():
            for chunk in chunks(ids):
                steps.filter(pk__in=chunk).update(waiting_for=F("waiting_for") - amount)
        ready: list[Any] = []
        for chunk in chunks(list(counts)):
            ready += steps.filter(pk__in=chunk, waiting_for=0).values_list("pk", flat=True)
        self.release(ready)

    def release(self, candidates: Sequence[Any]) -> None:
        """Queue the steps among ``candidates`` (waiting for nothing) still waiting, in running workflows."""
        running = [pk for pk, workflow in self.workflows.items() if workflow.status == WorkflowStatus.RUNNING]
        ready: list[tuple[Any, bool, str, str]] = []
        for chunk in chunks(candidates):
            rows = WorkflowStep.objects.db_manager(self.using).filter(
                pk__in=chunk, job__status=JobStatus.WAITING, workflow_id__in=running
            )
            ready += rows.values_list("pk", "takes_result", "job__queue_name", "job__unique_while")
        if not ready:
            return
        pass_results(self.using, [step for step, takes, _, _ in ready if takes])
        keyed = {step for step, _, _, scope in ready if scope}
        queued, held = queue_steps(self.using, [step for step, _, _, _ in ready], keyed)
        self.changes.released += queued
        self.changes.held += held
        queued_now = set(queued)
        new_queues = {queue for step, _, queue, _ in ready if step in queued_now} - self.changes.queues
        for queue in sorted(new_queues):
            self.notify(self.using, queue)
        self.changes.queues |= new_queues

    def fail_onward(self, ended: Sequence[Any]) -> None:
        """Cancel the dependents of steps that did not succeed, and theirs; count ``continue`` ones down."""
        frontier = list(ended)
        while frontier:
            edges = self.dependents(frontier)
            doomed = [step for step, on_failure, _ in edges if on_failure != OnFailure.CONTINUE]
            frontier = self.cancel_waiting(doomed)
            going_on = Counter(step for step, on_failure, _ in edges if on_failure == OnFailure.CONTINUE)
            if going_on:
                self.count_down(going_on)

    def cancel_waiting(self, ids: Sequence[Any]) -> list[Any]:
        """Cancel those of ``ids`` still waiting; their ids."""
        jobs = Job.objects.db_manager(self.using)
        cancelled: list[Any] = []
        for chunk in chunks(sorted(set(ids))):
            rows = list(jobs.filter(pk__in=chunk, status=JobStatus.WAITING).values_list("pk", "workflow_id"))
            if not rows:
                continue
            jobs.filter(pk__in=[pk for pk, _ in rows]).update(
                status=JobStatus.CANCELLED, finished_at=self.now
            )
            for pk, workflow_id in rows:
                self.count(workflow_id, JobStatus.CANCELLED)
                cancelled.append(pk)
        self.changes.cancelled += cancelled
        return cancelled

    def save_counts(self) -> None:
        """Add what else finished to each workflow's counts; a workflow whose every step finished ends."""
        for workflow_id, workflow in self.workflows.items():
            done, failed = self.finished[workflow_id], self.failed[workflow_id]
            workflow.steps_finished += done
            workflow.steps_failed += failed
            ending = not getattr(workflow, "finished_before", False) and end_if_done(workflow, self.now)
            if ending:
                workflow.save(using=self.using, update_fields=COUNT_FIELDS)
                workflow.refresh_from_db(using=self.using)
            elif done:
                workflow.save(using=self.using, update_fields=["steps_finished", "steps_failed"])
            self.changes.workflows.append(workflow)
        self.finished.clear()
        self.failed.clear()


COUNT_FIELDS = ["steps_finished", "steps_failed", "status", "finished_at"]


def queue_steps(using: str, ids: Sequence[Any], keyed: Collection[Any]) -> tuple[list[Any], list[Any]]:
    """Make these waiting steps ``queued``; ``(queued, held)``, their ids. ``keyed``: those of
    ``ids`` with a unique key (the callers have read it already).

    A step with a unique key is queued only if no other job of its task holds that
    key (the partial unique constraints decide, as for any enqueue); otherwise it
    stays ``waiting``, marked ``key_held``, and :func:`release_held_steps` queues it
    once the key is free. A step never merges into another job: its workflow needs
    its own outcome. Each keyed step is tried in a savepoint of its own, in key
    order (one order for everybody, so two releases never wait on each other).
    """
    jobs = Job.objects.db_manager(using)
    queued = [pk for pk in ids if pk not in keyed]
    for chunk in chunks(queued):
        jobs.filter(pk__in=chunk, status=JobStatus.WAITING).update(status=JobStatus.QUEUED)
    keys: list[tuple[str, str, str, Any]] = []
    for chunk in chunks(list(keyed)):
        keys += jobs.filter(pk__in=chunk).values_list("task_path", "unique_while", "unique_key", "pk")
    held: list[Any] = []
    taken: set[tuple[str, str, str]] = set()
    for task_path, scope, key, pk in sorted(keys, key=lambda row: (*row[:3], str(row[3]))):
        if (task_path, scope, key) in taken:  # queued just now, or found held: the others with it wait
            held.append(pk)
            continue
        taken.add((task_path, scope, key))
        try:
            with transaction.atomic(using=using):
                jobs.filter(pk=pk, status=JobStatus.WAITING).update(status=JobStatus.QUEUED)
        except IntegrityError:  # bourbon_job_unique_active or _queued: another job holds the key
            held.append(pk)
        else:
            queued.append(pk)
    steps = WorkflowStep.objects.db_manager(using)
    for chunk in chunks(held):
        steps.filter(pk__in=chunk).update(key_held=True)
    for chunk in chunks([pk for pk in queued if pk in keyed]):
        steps.filter(pk__in=chunk, key_held=True).update(key_held=False)
    return queued, held


def release_held_steps(using: str, now: datetime, notify: Notify, limit: int = 500) -> StepChanges:
    """Queue the steps left waiting for a unique key (``key_held``) whose key is free now.

    Under their workflows' locks, as every release is; a held step whose workflow
    was cancelled meanwhile is only unmarked.
    """
    steps = WorkflowStep.objects.db_manager(using)
    with transaction.atomic(using=using):
        rows = list(steps.filter(key_held=True).values_list("pk", "workflow_id", "job__status")[:limit])
        if not rows:
            return StepChanges()
        gone = [pk for pk, _, status in rows if status != JobStatus.WAITING]
        for chunk in chunks(gone):
            steps.filter(pk__in=chunk).update(key_held=False)
        waiting = [(pk, workflow_id) for pk, workflow_id, status in rows if status == JobStatus.WAITING]
        workflows = lock_workflows(using, {workflow_id for _, workflow_id in waiting})
        settling = Settling(using, now, workflows, notify)
        settling.release([pk for pk, _ in waiting])
        settling.changes.held = []  # told when they were first held
        return settling.changes


def end_if_done(workflow: Workflow, now: datetime) -> bool:
    """Once every step finished: ``succeeded`` if all did, else ``failed`` (a cancelled workflow stays so).

    True if it ended just now.
    """
    if workflow.finished_at is not None or workflow.steps_finished < workflow.step_count:
        return False
    workflow.finished_at = now
    if workflow.status == WorkflowStatus.RUNNING:
        failed = workflow.steps_failed > 0
        workflow.status = WorkflowStatus.FAILED if failed else WorkflowStatus.SUCCEEDED
    return True


def pass_results(using: str, step_ids: Sequence[Any]) -> None:
    """Give each of these ``takes_result`` steps its one dependency's return value as its payload.

    One UPDATE per dependency, so a step that fans out to thousands costs one statement per chunk.
    """
    if not step_ids:
        return
    results: dict[Any, Any] = {}
    takers: dict[Any, list[Any]] = defaultdict(list)
    for chunk in chunks(step_ids):
        edges = StepDependency.objects.db_manager(using).filter(step_id__in=chunk)
        for step, after, status, value in edges.values_list(
            "step_id", "after_id", "after__job__status", "after__job__return_value"
        ):
            results[after] = value if status == JobStatus.SUCCEEDED else None
            takers[after].append(step)
    jobs = Job.objects.db_manager(using)
    for after, steps in takers.items():
        for chunk in chunks(steps):
            jobs.filter(pk__in=chunk).update(args=[results[after]])


def settle_finished(
    using: str, steps: Sequence[tuple[Any, str, Any]], now: datetime, notify: Notify
) -> StepChanges:
    """Steps just finished (``(job id, status, workflow id)``, their rows written in this transaction).

    Counts them in their workflows (which locks those), then releases or cancels their
    dependents. Call inside the transaction that wrote the outcomes.
    """
    finished: Counter[Any] = Counter()
    failed: Counter[Any] = Counter()
    for _, status, workflow_id in steps:
        finished[workflow_id] += 1
        failed[workflow_id] += status != JobStatus.SUCCEEDED
    workflows = count_finished(using, finished, failed)
    return Settling(using, now, workflows, notify).finish(steps, counted=True)


def count_finished(using: str, finished: Counter[Any], failed: Counter[Any]) -> dict[Any, Workflow]:
    """Add to the workflows' counts, in id order (one order for everybody): each UPDATE takes the row lock.

    The workflows come back with their counts and status only (what deciding their end
    needs); one that ends is read whole before it is announced.
    """
    connection = connections[using]
    pk = Workflow._meta.pk
    workflows = {}
    for workflow_id in sorted(finished):
        with connection.cursor() as cursor:
            params = [
                finished[workflow_id],
                failed[workflow_id],
                pk.get_db_prep_value(workflow_id, connection),
            ]  # type: ignore[union-attr]
            cursor.execute(statements.count_finished_sql(), params)
            row = cursor.fetchone()
        if row is not None:
            workflow = Workflow(
                pk=pk.to_python(row[0]),  # type: ignore[union-attr]
                status=row[1],
                step_count=row[2],
                steps_finished=row[3],
                steps_failed=row[4],
            )
            workflow._state.adding, workflow._state.db = False, using
            workflow.finished_before = row[5] is not None  # type: ignore[attr-defined]
            workflows[workflow.pk] = workflow
    return workflows


def settle_outcomes(
    using: str, jobs: Sequence[Job], written: Iterable[tuple[Any, str]], now: datetime, notify: Notify
) -> StepChanges:
    """After an outcome batch's write (``written``: the ``(id, status)`` rows it changed), in its
    transaction."""
    workflow_of = {job.pk: job.workflow_id for job in jobs if job.workflow_id is not None}
    to_python = Job._meta.pk.to_python  # type: ignore[union-attr]
    finished = []
    for raw_id, status in written:
        job_id = to_python(raw_id)
        if job_id in workflow_of and status in FINISHED_STATUSES:
            finished.append((job_id, status, workflow_of[job_id]))
    if not finished:
        return StepChanges()
    return settle_finished(using, finished, now, notify)


def insert_workflow(
    store: Any,
    using: str,
    workflow: Workflow,
    jobs: Sequence[Job],
    steps: Sequence[WorkflowStep],
    edges: Sequence[StepDependency],
) -> None:
    """Write a workflow and all its steps; the caller's transaction makes it all or nothing.

    Steps that wait for nothing are written ``queued``, except those with a unique key:
    written ``waiting``, they are queued as a release would (:func:`queue_steps`).
    """
    workflow.save(force_insert=True, using=using)
    store.insert_rows(jobs, using)
    store.insert_rows(steps, using)
    store.insert_rows(edges, using)
    starting = {step.job_id for step in steps if step.waiting_for == 0}
    keyed = [job.pk for job in jobs if job.unique_while and job.pk in starting]
    if keyed:
        queued, _ = queue_steps(using, keyed, set(keyed))
        queued_now = set(queued)
        for job in jobs:
            if job.pk in queued_now:
                job.status = JobStatus.QUEUED
    for queue in sorted({job.queue_name for job in jobs if job.status == JobStatus.QUEUED}):
        store.notify(using, queue)


def cancel_steps(using: str, job_ids: Sequence[Any], now: datetime, notify: Notify) -> StepChanges:
    """Cancel the pending steps among ``job_ids``, and fail their dependents onward, in one transaction."""
    jobs = Job.objects.db_manager(using)
    with transaction.atomic(using=using):
        workflow_ids = set()
        for chunk in chunks(job_ids):
            workflow_ids |= set(jobs.filter(pk__in=chunk).values_list("workflow_id", flat=True))
        workflows = lock_workflows(using, workflow_ids - {None})
        settling = Settling(using, now, workflows, notify)
        pending: list[tuple[Any, Any]] = []
        for chunk in chunks(job_ids):
            rows = jobs.filter(pk__in=chunk, status__in=PENDING_STATUSES, workflow_id__in=list(workflows))
            pending += rows.values_list("pk", "workflow_id")
        for chunk in chunks([pk for pk, _ in pending]):
            jobs.filter(pk__in=chunk).update(status=JobStatus.CANCELLED, finished_at=now)
        settling.changes.cancelled += [pk for pk, _ in pending]
        return settling.finish([(pk, JobStatus.CANCELLED, workflow_id) for pk, workflow_id in pending])


@dataclass
class WorkflowCancel:
    workflow: Workflow
    cancelled: list[Any]
    """Steps that had not started, now cancelled."""
    running: list[Any]
    """Steps running now: the caller asks them to stop."""


def cancel_workflow(using: str, workflow_id: Any, now: datetime) -> WorkflowCancel | None:
    """Cancel every step not started and mark the workflow ``cancelled``; ``None`` if it is not running."""
    jobs = Job.objects.db_manager(using)
    with transaction.atomic(using=using):
        workflow = lock_workflows(using, [workflow_id]).get(workflow_id)
        if workflow is None or workflow.status != WorkflowStatus.RUNNING:
            return None
        pending = list(
            jobs.filter(workflow=workflow, status__in=PENDING_STATUSES).values_list("pk", flat=True)
        )
        for chunk in chunks(pending):
            jobs.filter(pk__in=chunk).update(status=JobStatus.CANCELLED, finished_at=now)
        workflow.status = WorkflowStatus.CANCELLED
        workflow.steps_finished += len(pending)
        workflow.steps_failed += len(pending)
        end_if_done(workflow, now)
        workflow.save(using=using, update_fields=COUNT_FIELDS)
        running = list(jobs.filter(workflow=workflow, status=JobStatus.RUNNING).values_list("pk", flat=True))
    return WorkflowCancel(workflow, pending, running)


@dataclass
class WorkflowRetry:
    workflow: Workflow
    queued: list[Any]
    """Failed or cancelled steps whose dependencies all succeeded: queued again."""
    waiting: list[Any]
    """The others: waiting again for the steps they depend on."""
    queues: set[str] = field(default_factory=set)
    """The queues of the steps queued."""


def retry_workflow(using: str, workflow_id: Any, now: datetime, notify: Notify) -> WorkflowRetry | None:
    """Run a workflow again from its failed and cancelled steps; ``None`` if it has none.

    Each of those steps waits again for its dependencies that are being retried
    or have not finished; those that wait for nothing are queued (attempts reset,
    as :func:`~django_bourbon_jobs.operations.retry_jobs` does, their error history kept).
    """
    jobs = Job.objects.db_manager(using)
    with transaction.atomic(using=using):
        workflow = lock_workflows(using, [workflow_id]).get(workflow_id)
        if workflow is None:
            return None
        again = set(
            jobs.filter(workflow=workflow, status__in=(JobStatus.FAILED, JobStatus.CANCELLED)).values_list(
                "pk", flat=True
            )
        )
        if not again:
            return None
        waiting_for = blockers(using, again)
        queued = sorted(step for step in again if not waiting_for[step])
        waiting = sorted(step for step in again if waiting_for[step])
        queued, held = reopen_steps(using, queued, waiting, waiting_for, now)
        waiting = [*waiting, *held]
        workflow.status, workflow.finished_at, workflow.steps_failed = WorkflowStatus.RUNNING, None, 0
        workflow.steps_finished = jobs.filter(workflow=workflow, status__in=FINISHED_STATUSES).count()
        workflow.save(using=using, update_fields=COUNT_FIELDS)
        queues: set[str] = set()
        for chunk in chunks(queued):
            queues |= set(jobs.filter(pk__in=chunk).values_list("queue_name", flat=True))
        for queue in sorted(queues):
            notify(using, queue)
    return WorkflowRetry(workflow, queued, waiting, queues)


def blockers(using: str, again: set[Any]) -> Counter[Any]:
    """For each step to run again: its dependencies that are to run again too, or have not finished."""
    counts: Counter[Any] = Counter()
    edges = StepDependency.objects.db_manager(using)
    for chunk in chunks(sorted(again)):
        for step, after, status in edges.filter(step_id__in=chunk).values_list(
            "step_id", "after_id", "after__job__status"
        ):
            if after in again or status not in FINISHED_STATUSES:
                counts[step] += 1
    return counts


def reopen_steps(
    using: str, queued: Sequence[Any], waiting: Sequence[Any], waiting_for: Counter[Any], now: datetime
) -> tuple[list[Any], list[Any]]:
    """Queue ``queued`` and make ``waiting`` wait again, each counting ``waiting_for`` dependencies.

    The queued ones that take their dependency's result get it again (it may never
    have been passed: a step cancelled before its release). Returns :func:`queue_steps`'
    ``(queued, held)``: a step whose unique key another job holds waits for it.
    """
    jobs = Job.objects.db_manager(using)
    for chunk in chunks([*queued, *waiting]):
        jobs.filter(pk__in=chunk).update(status=JobStatus.WAITING, due_at=now, **RETRY_FIELDS)
    by_count: dict[int, list[Any]] = defaultdict(list)
    for step in [*queued, *waiting]:
        by_count[waiting_for[step]].append(step)
    steps = WorkflowStep.objects.db_manager(using)
    for count, ids in by_count.items():
        for chunk in chunks(ids):
            steps.filter(pk__in=chunk).update(waiting_for=count)
    takers: list[Any] = []
    keyed: set[Any] = set()
    for chunk in chunks(queued):
        for step, takes_result, scope in steps.filter(pk__in=chunk).values_list(
            "pk", "takes_result", "job__unique_while"
        ):
            if takes_result:
                takers.append(step)
            if scope:
                keyed.add(step)
    pass_results(using, takers)
    return queue_steps(using, queued, keyed)


def prune_empty_workflows(using: str, limit: int) -> int:
    """Delete up to ``limit`` workflows none of whose steps is left (pruned by ``RETENTION``, or deleted).

    A workflow's steps are inserted in its own transaction, so a new one is never seen empty.
    """
    workflows = Workflow.objects.db_manager(using)
    steps_left = Job.objects.db_manager(using).filter(workflow=OuterRef("pk"))
    empty = workflows.filter(~Exists(steps_left)).order_by().values("pk")[:limit]
    deleted, _ = workflows.filter(pk__in=Subquery(empty)).delete()
    return deleted
