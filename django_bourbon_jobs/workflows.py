"""Workflows: chains, groups and graphs of jobs, stored in the database.

::

    from django_bourbon_jobs.workflows import Workflow, chain, group, get_workflow

    wf = Workflow("import-feed")
    wf.add("fetch", fetch_feed, {"url": url})
    wf.add("parse", parse_feed, after=["fetch"])          # gets fetch's return value
    wf.add("index", index_items, after=["parse"])
    wf.add("notify", notify_owner, {"user_id": 7}, after=["parse", "index"])
    run = wf.dispatch()                                   # one transaction writes every step

    chain((fetch_feed, {"url": url}), parse_feed, index_items).dispatch()
    group((resize, {"w": 100}), (resize, {"w": 200})).then(notify_owner, {"user_id": 7}).dispatch()

A step is an ordinary job (retries, timeouts, priorities and queues apply to it as
to any), which waits in status ``waiting`` until every step it names in ``after``
has succeeded. Its payload is what ``add`` was given, as ``dispatch_async(task,
payload)`` takes it; a step given none that waits for exactly one step gets that
step's return value. A step whose dependency fails for good is cancelled (and so
are the steps waiting for it), unless it says ``on_failure="continue"``: then it
runs anyway, and ``context.dependency_results`` shows the failure. See
``docs/workflows.md``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import router, transaction
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, Task, TaskResult
from django.tasks.signals import task_enqueued
from django.utils import timezone

from django_bourbon_jobs import log, operations, store
from django_bourbon_jobs.dispatch import DISPATCH_OPTIONS, prepared_task
from django_bourbon_jobs.events import publish
from django_bourbon_jobs.exceptions import InvalidPayload, WorkflowDoesNotExist, WorkflowError
from django_bourbon_jobs.models import Job, JobStatus, OnFailure, StepDependency, WorkflowStep
from django_bourbon_jobs.models import Workflow as WorkflowRow
from django_bourbon_jobs.results import to_task_result
from django_bourbon_jobs.serialization import ensure_json
from django_bourbon_jobs.store import steps as step_store
from django_bourbon_jobs.tasks import task_options, unique_of

__all__ = ["Step", "Workflow", "WorkflowResult", "chain", "get_workflow", "group"]

OMITTED: Any = object()
"""A step's payload when ``add`` was given none."""
STEP_OPTIONS = DISPATCH_OPTIONS - {"dispatched_by", "idempotency_key"}
"""``dispatch_async``'s options a step takes; the workflow's dispatcher owns every step."""
NAME_LENGTH = WorkflowStep._meta.get_field("name").max_length or 200


@dataclass(frozen=True)
class Step:
    """One step as added, before dispatch: ``after`` names the steps it waits for."""

    name: str
    task: Task
    payload: Any
    after: tuple[str, ...]
    on_failure: str

    @property
    def takes_result(self) -> bool:
        """Given no payload and waiting for one step: its payload is that step's return value."""
        return self.payload is OMITTED and len(self.after) == 1

    def arguments(self) -> tuple[Any]:
        return (None if self.payload is OMITTED else self.payload,)


class Workflow:
    """Steps and what each waits for; :meth:`dispatch` writes them all in one transaction."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise WorkflowError("A workflow needs a name (a non-empty string).")
        self.name = name[:255]
        self.steps: dict[str, Step] = {}
        self.result: WorkflowResult | None = None

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r}: {len(self.steps)} steps>"

    def add(
        self,
        name: str,
        task: Task,
        payload: Any = OMITTED,
        *,
        after: Iterable[str | Step] | str | Step = (),
        on_failure: str = OnFailure.CANCEL,
        **options: Any,
    ) -> Step:
        """Add a step: ``task(payload)`` once every step named in ``after`` has succeeded.

        ``options`` are ``dispatch_async``'s (``queue_name``, ``priority``, ``delay``,
        ``run_after``, ``callback_url``). ``on_failure="continue"`` runs the step even if
        a dependency fails. Raises :class:`~django_bourbon_jobs.exceptions.WorkflowError`
        for a repeated name or a step that waits for itself, ``TypeError`` for a bad
        task or option, ``InvalidPayload`` for a payload that is not JSON.
        """
        if self.result is not None:
            raise WorkflowError(f"Workflow {self.name!r} was dispatched: steps can be added only before.")
        step = Step(
            name=self._new_name(name),
            task=_step_task(task, options),
            payload=_checked_payload(name, task, payload),
            after=_names(after),
            on_failure=_on_failure(on_failure),
        )
        if step.name in step.after:
            raise WorkflowError(f"Step {step.name!r} waits for itself: a cycle.")
        if step.takes_result and callable(getattr(task_options(step.task), "unique_key", None)):
            raise WorkflowError(
                f"Step {step.name!r} takes its dependency's return value as its payload, so "
                f"{step.task.name}'s unique_key cannot be derived from it before dispatch: give the "
                "step a payload, or a unique_key= string."
            )
        self.steps[step.name] = step
        return step

    def _new_name(self, name: str) -> str:
        if not isinstance(name, str) or not name or len(name) > NAME_LENGTH:
            raise WorkflowError(
                f"A step's name must be a non-empty string of at most {NAME_LENGTH} characters."
            )
        if name in self.steps:
            raise WorkflowError(f"Workflow {self.name!r} already has a step named {name!r}.")
        return name

    def dispatch(self, dispatched_by: Any = None) -> WorkflowResult:
        """Write the workflow and every step in one transaction; its :class:`WorkflowResult`.

        Steps that wait for nothing are queued at once. Inside a transaction that rolls
        back, nothing is written. ``dispatched_by`` (a user) owns the workflow and its steps.
        """
        if self.result is not None:
            raise WorkflowError(f"Workflow {self.name!r} was dispatched already.")
        order = checked_order(self.name, self.steps)
        written = _Writing.build(self, order, _saved_user(dispatched_by))
        written.write()
        self.result = WorkflowResult(written.row)
        written.announce()
        return self.result


def checked_order(name: str, steps: Mapping[str, Step]) -> list[str]:
    """The steps' names, each after every step it waits for; :class:`WorkflowError` for an unknown name or
    a cycle, naming it."""
    if not steps:
        raise WorkflowError(f"Workflow {name!r} has no steps.")
    for step in steps.values():
        unknown = [after for after in step.after if after not in steps]
        if unknown:
            raise WorkflowError(
                f"Step {step.name!r} of workflow {name!r} waits for {', '.join(map(repr, unknown))}, "
                f"which is not a step of it (its steps: {', '.join(map(repr, steps))})."
            )
    return _dependencies_first(steps)


def _dependencies_first(steps: Mapping[str, Step]) -> list[str]:
    """Depth first along ``after`` (on a stack: a long chain is no recursion); a cycle raises."""
    visiting, done = set(), set()
    order: list[str] = []
    for root in steps:
        if root in done:
            continue
        path, stack = [root], [iter(steps[root].after)]
        visiting.add(root)
        while stack:
            after = next(stack[-1], None)
            if after is None:
                stack.pop()
                finished = path.pop()
                visiting.discard(finished)
                done.add(finished)
                order.append(finished)
            elif after in visiting:
                cycle = " -> ".join([*path[path.index(after) :], after])
                raise WorkflowError(
                    f"Steps wait for each other in a cycle: {cycle} (each waits for the next)."
                )
            elif after not in done:
                visiting.add(after)
                path.append(after)
                stack.append(iter(steps[after].after))
    return order


@dataclass
class _Writing:
    """The rows of one dispatch, built before the transaction that writes them."""

    workflow: Workflow
    row: WorkflowRow
    jobs: list[Job]
    step_rows: list[WorkflowStep]
    edges: list[StepDependency]

    @classmethod
    def build(cls, workflow: Workflow, order: list[str], user: Any) -> _Writing:
        now = timezone.now()
        row = WorkflowRow(name=workflow.name, started_at=now, step_count=len(order), dispatched_by=user)
        jobs: dict[str, Job] = {}
        for name in workflow.steps:  # in the order added: ids ascend with it
            step = workflow.steps[name]
            job = step.task.get_backend().build_job(step.task, step.arguments(), {}, now)  # type: ignore[attr-defined]
            job.workflow_id, job.dispatched_by = row.pk, user
            unique = unique_of(step.task, step.arguments(), {})
            if unique is not None:
                job.unique_key, job.unique_while = unique
            job.status = JobStatus.WAITING if step.after or unique else JobStatus.QUEUED
            jobs[name] = job
        step_rows = [
            WorkflowStep(
                job_id=jobs[name].pk,
                workflow_id=row.pk,
                name=name,
                position=position,
                on_failure=step.on_failure,
                takes_result=step.takes_result,
                waiting_for=len(step.after),
            )
            for position, (name, step) in enumerate(workflow.steps.items())
        ]
        edges = [
            StepDependency(step_id=jobs[name].pk, after_id=jobs[after].pk)
            for name in order
            for after in workflow.steps[name].after
        ]
        return cls(workflow, row, list(jobs.values()), step_rows, edges)

    def ensure_limits(self, using: str) -> None:
        """The ``Limit`` rows of the steps' limited tasks, as an enqueue of each would write them."""
        limited = {
            job.task_path: self.workflow.steps[name].task for name, job in self.named_jobs() if job.limit_key
        }
        for task in limited.values():
            task.get_backend().ensure_limits(task, using)  # type: ignore[attr-defined]

    def named_jobs(self) -> Iterator[tuple[str, Job]]:
        """Each step's name with its job, in the order the steps were added."""
        return zip(self.workflow.steps, self.jobs, strict=True)

    def write(self) -> None:
        using = router.db_for_write(Job)
        with transaction.atomic(using=using):
            self.ensure_limits(using)
            step_store.insert_workflow(
                store.for_connection(using), using, self.row, self.jobs, self.step_rows, self.edges
            )
            queues = {job.queue_name for job in self.jobs if job.status == JobStatus.QUEUED}
            transaction.on_commit(lambda: publish.publish_enqueued(queues), using=using)

    def announce(self) -> None:
        """``task_enqueued`` per step (if anyone listens) and a log line per step, as a dispatch sends."""
        log.workflow_event(self.row, "dispatched")
        listening = task_enqueued.has_listeners()
        for job, step in zip(self.jobs, self.workflow.steps.values(), strict=True):
            if job.status == JobStatus.QUEUED:
                log.job_event(job, "queued", step=step.name)
            elif step.after:
                log.job_event(job, "waiting", step=step.name)
            else:  # waits for nothing but its unique key, which another job holds
                log.job_event(job, "held", step=step.name, unique_key=job.unique_key)
            if listening:
                backend = step.task.get_backend()
                task_enqueued.send(type(backend), task_result=to_task_result(job, backend.alias, step.task))


def _step_task(task: Task, options: dict[str, Any]) -> Task:
    refused = set(options) - STEP_OPTIONS
    if refused & DISPATCH_OPTIONS:
        raise TypeError(
            f"A workflow step takes no {', '.join(sorted(refused & DISPATCH_OPTIONS))}: "
            "pass dispatched_by to dispatch(), which owns every step."
        )
    prepared = prepared_task(task, options)
    if not hasattr(prepared.get_backend(), "build_job"):
        raise TypeError(
            f"{prepared.name}'s backend cannot store workflow steps: use "
            "django_bourbon_jobs.backends.DatabaseBackend."
        )
    return prepared


def _checked_payload(name: str, task: Task, payload: Any) -> Any:
    if payload is OMITTED:
        return OMITTED
    return ensure_json(
        payload, InvalidPayload, f"The payload of step {name!r} ({getattr(task, 'name', task)})"
    )


def _names(after: Iterable[str | Step] | str | Step) -> tuple[str, ...]:
    items = [after] if isinstance(after, str | Step) else list(after)
    names = [item.name if isinstance(item, Step) else item for item in items]
    if not all(isinstance(name, str) for name in names):
        raise TypeError("after= takes step names (or the steps add() returned).")
    return tuple(dict.fromkeys(names))


def _on_failure(value: str) -> str:
    if value not in OnFailure.values:
        raise ValueError(f"on_failure must be {' or '.join(map(repr, OnFailure.values))}, not {value!r}.")
    return str(value)


def _saved_user(user: Any) -> Any:
    if user is None or not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
        return None
    return user


StepSpec = Task | tuple[Task] | tuple[Task, Any]
"""A ``chain``/``group`` member: a task (no payload), or ``(task, payload)``."""


def _spec(spec: StepSpec) -> tuple[Task, Any]:
    if isinstance(spec, tuple):
        if len(spec) == 1:
            return spec[0], OMITTED
        if len(spec) == 2:
            return spec[0], spec[1]
        raise TypeError("A chain or group member is a task or a (task, payload) pair.")
    return spec, OMITTED


def _step_name(task: Task, n: int) -> str:
    return f"{n}-{getattr(task, 'name', 'step')}"[:NAME_LENGTH]


def chain(*specs: StepSpec, name: str = "chain") -> Workflow:
    """Each step after the one before; a step given no payload gets the previous one's return value.

    Steps are named ``"<n>-<task name>"`` from 1 (``run.steps["2-parse_feed"]``).
    """
    workflow = Workflow(name)
    previous: str | None = None
    for n, spec in enumerate(specs, start=1):
        task, payload = _spec(spec)
        previous = workflow.add(_step_name(task, n), task, payload, after=[previous] if previous else []).name
    return workflow


class Group:
    """Steps that run side by side; :meth:`then` adds one step after all of them."""

    def __init__(self, specs: Iterable[StepSpec], name: str) -> None:
        self.workflow = Workflow(name)
        self.members: list[str] = []
        for n, spec in enumerate(specs, start=1):
            task, payload = _spec(spec)
            self.members.append(self.workflow.add(_step_name(task, n), task, payload).name)

    def then(self, task: Task, payload: Any = OMITTED, **options: Any) -> Workflow:
        """The workflow: the group, then ``task(payload)`` (step ``"then"``) once every member succeeded."""
        self.workflow.add("then", task, payload, after=self.members, **options)
        return self.workflow

    def dispatch(self, dispatched_by: Any = None) -> WorkflowResult:
        """The group alone, no callback."""
        return self.workflow.dispatch(dispatched_by)


def group(*specs: StepSpec, name: str = "group") -> Group:
    """Steps that run side by side (fan out); ``.then(task, payload)`` for one step after them all.

    Members are named ``"<n>-<task name>"`` from 1, the callback ``"then"``.
    """
    return Group(specs, name)


class StepResults(Mapping[str, TaskResult]):
    """A workflow's steps by name, each a ``TaskResult``; read from the database when first asked for."""

    def __init__(self, workflow_id: Any, using: str) -> None:
        self.workflow_id = workflow_id
        self.using = using
        self._results: dict[str, TaskResult] = {}
        self._names: list[str] | None = None

    def forget(self) -> None:
        self._results, self._names = {}, None

    def _jobs(self) -> Any:
        return Job.objects.db_manager(self.using).filter(workflow_id=self.workflow_id)

    def __getitem__(self, name: str) -> TaskResult:
        if name not in self._results:
            job = self._jobs().filter(workflow_step__name=name).first()
            if job is None:
                raise KeyError(name)
            self._results[name] = to_task_result(job, DEFAULT_TASK_BACKEND_ALIAS)
        return self._results[name]

    def __iter__(self) -> Iterator[str]:
        if self._names is None:
            steps = WorkflowStep.objects.db_manager(self.using).filter(workflow_id=self.workflow_id)
            self._names = list(steps.order_by("position").values_list("name", flat=True))
        return iter(self._names)

    def __len__(self) -> int:
        return len(list(iter(self)))

    def load(self) -> dict[str, TaskResult]:
        """Every step at once (one query), by name in the order added."""
        jobs = self._jobs().select_related("workflow_step").order_by("workflow_step__position")
        self._results = {
            job.workflow_step.name: to_task_result(job, DEFAULT_TASK_BACKEND_ALIAS) for job in jobs
        }
        self._names = list(self._results)
        return dict(self._results)

    def values(self) -> Any:
        return self.load().values()

    def items(self) -> Any:
        return self.load().items()


class WorkflowResult:
    """A workflow as stored when read: like a ``TaskResult``, :meth:`refresh` reads it again.

    ``status`` is ``"running"``, ``"succeeded"``, ``"failed"`` or ``"cancelled"``;
    ``steps[name]`` is that step's ``TaskResult``.
    """

    def __init__(self, row: WorkflowRow) -> None:
        self.using = row._state.db or router.db_for_read(WorkflowRow)
        self.steps = StepResults(row.pk, self.using)
        self._take(row)

    def _take(self, row: WorkflowRow) -> None:
        self.id = str(row.pk)
        self.name = row.name
        self.status = str(row.status)
        self.started_at: datetime = row.started_at
        self.finished_at: datetime | None = row.finished_at
        self.step_count = row.step_count
        self.steps_finished = row.steps_finished
        self.steps_failed = row.steps_failed
        self.dispatched_by_id = row.dispatched_by_id

    def __repr__(self) -> str:
        return (
            f"<WorkflowResult {self.name!r} {self.id} {self.status} {self.steps_finished}/{self.step_count}>"
        )

    @property
    def is_finished(self) -> bool:
        """Every step has finished (a cancelled workflow may still have steps stopping)."""
        return self.finished_at is not None

    @property
    def progress(self) -> tuple[int, int]:
        """``(steps finished, steps)``."""
        return self.steps_finished, self.step_count

    def refresh(self) -> None:
        """Read the workflow again; steps are read again when next asked for."""
        try:
            row = WorkflowRow.objects.db_manager(self.using).get(pk=self.id)
        except WorkflowRow.DoesNotExist as exc:
            raise WorkflowDoesNotExist(f"Workflow {self.id} no longer exists.") from exc
        self._take(row)
        self.steps.forget()

    def cancel(self) -> bool:
        """Cancel every step not started yet and ask running ones to stop; false if it is not running."""
        cancelled = operations.cancel_workflow(self.id)
        self.refresh()
        return cancelled

    def retry(self) -> int:
        """Run it again from its failed and cancelled steps; how many steps will run again."""
        count = operations.retry_workflow(self.id)
        self.refresh()
        return count


def get_workflow(workflow_id: Any) -> WorkflowResult:
    """A workflow's :class:`WorkflowResult` by id; ``WorkflowDoesNotExist`` for an unknown one."""
    try:
        pk = uuid.UUID(str(workflow_id))
    except ValueError:
        pk = None
    row = WorkflowRow.objects.filter(pk=pk).first() if pk else None
    if row is None:
        raise WorkflowDoesNotExist(f"No workflow with id {workflow_id!r}.")
    return WorkflowResult(row)
