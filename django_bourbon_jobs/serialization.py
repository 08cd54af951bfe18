"""JSON is the only format a payload or a return value is stored in."""

from __future__ import annotations

import json
import traceback
from datetime import datetime
from typing import Any

_SCALARS = frozenset({str, bool, int, type(None)})


def _flat_json(value: Any) -> bool:
    """A list of scalars or a dict of them under string keys reads back as it is: no round trip."""
    if type(value) is list:
        return all(type(item) in _SCALARS for item in value)
    if type(value) is dict:
        return all(type(key) is str and type(item) in _SCALARS for key, item in value.items())
    return False


def ensure_json(value: Any, error_class: type[Exception], what: str) -> Any:
    """Return ``value`` as it will read back from the database, or raise ``error_class``.

    NaN and infinities are refused too: PostgreSQL's ``jsonb`` cannot store them.
    """
    if value is None or type(value) in _SCALARS or _flat_json(value):
        return value
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise error_class(f"{what} must be JSON-serialisable: {exc}") from exc


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def error_record(
    exc: BaseException,
    *,
    worker_id: str,
    attempt: int,
    at: datetime,
    exception_class: type | None = None,
) -> dict[str, Any]:
    """What a failed attempt leaves in ``Job.errors``: text only, never a pickle."""
    return {
        "exception_class_path": class_path(exception_class or type(exc)),
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        "worker_id": worker_id,
        "attempt": attempt,
        "at": at.isoformat(),
    }
