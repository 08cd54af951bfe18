"""The tasks of the contract: the shapes Django's own `tests/tasks/` exercises, with a plain `@task`."""

import sys

from django.tasks import task
from django.utils import timezone


@task()
def noop(*args, **kwargs):
    return None


@task
def noop_bare(*args, **kwargs):
    """Declared with the bare decorator."""
    return None


@task()
async def noop_async(*args, **kwargs):
    return None


@task()
def meaning_of_life():
    return 42


@task()
def raises_value_error():
    raise ValueError("This task failed due to ValueError")


@task()
def raises_system_exit():
    raise SystemExit("This task failed due to SystemExit")


@task()
def raises_keyboard_interrupt():
    raise KeyboardInterrupt("This task failed due to KeyboardInterrupt")


@task()
def raises_nested_exception():
    raise ValueError(ValueError("This task failed"))


@task()
def returns_unsupported_type():
    return {"when": timezone.now()}


@task()
def exits():
    sys.exit(1)


@task(takes_context=True)
def own_id(context):
    return context.task_result.id


@task(takes_context=True)
def reports_attempt(context, expected):
    assert context.attempt == expected, context.attempt
    return context.attempt
