"""JSON is the only format a payload or a return value is stored in.

Arguments and return values are first normalised as Django's own backends do
(``django.utils.json.normalize_json``): bytes that are UTF-8 become strings,
tuples and other sequences lists, and anything else is refused with Django's
"Unsupported type" ``TypeError`` (or its ``ValueError`` for bytes that are not
UTF-8). JSON then turns dictionary keys into strings.

PostgreSQL's ``jsonb`` cannot store NaN or an infinity, its ``jsonb`` and text
columns cannot hold a NUL character, and no UTF-8 column can hold a lone
surrogate (``"\\ud800"``, which Python strings allow). Diagnostic text (error
messages, tracebacks, progress) is made storable by spelling such characters
out as escapes; a return value that holds one is refused, since changing it
would hand its reader different data.
"""

from __future__ import annotations

import json
import traceback
from datetime import datetime
from typing import Any

from django.utils.json import normalize_json

from django_bourbon_jobs.exceptions import InvalidReturnValue

_SCALARS = frozenset({str, bool, int, type(None)})


def _flat_json(value: Any) -> bool:
    """A list of scalars or a dict of them under string keys reads back as it is: no round trip."""
    if type(value) is list:
        return all(type(item) in _SCALARS for item in value)
    if type(value) is dict:
        return all(type(key) is str and type(item) in _SCALARS for key, item in value.items())
    return False


def _reads_back_as_is(value: Any) -> bool:
    return value is None or type(value) in _SCALARS or _flat_json(value)


def _round_trip(value: Any) -> Any:
    """A normalised value as JSON reads it back: string keys; NaN and infinities refused (``ValueError``)."""
    return json.loads(json.dumps(value, allow_nan=False))


def ensure_json(value: Any, error_class: type[Exception], what: str) -> Any:
    """Return ``value`` as it will read back from the database, or raise ``error_class`` saying why."""
    if _reads_back_as_is(value):
        return value
    try:
        return _round_trip(normalize_json(value))
    except (TypeError, ValueError) as exc:
        raise error_class(f"{what} must be JSON-serialisable: {exc}") from exc


def storable_text(text: str) -> str:
    """``text`` with NUL characters and lone surrogates spelled out as ``\\x00`` / ``\\ud800``."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def storable(value: Any) -> Any:
    """A JSON value whose strings (keys too) are all :func:`storable_text`."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, list):
        return [storable(item) for item in value]
    if isinstance(value, dict):
        return {storable_text(str(key)): storable(item) for key, item in value.items()}
    return value


def unstorable_character(value: Any) -> str | None:
    """Name the first character of ``value`` no database can store as JSON text, or ``None``."""
    if isinstance(value, str):
        if "\x00" in value:
            return "a NUL character (\\x00)"
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                return f"a lone surrogate ({value[exc.start]!r})"
        return None
    if isinstance(value, dict):
        items: Any = [item for pair in value.items() for item in pair]
    elif isinstance(value, list):
        items = value
    else:
        return None
    return next((found for item in items if (found := unstorable_character(item))), None)


def normalized_as_django_does(value: Any, what: str) -> Any:
    """``normalize_json(value)``, or the ``TypeError``/``ValueError`` it raises, saying what was refused."""
    try:
        return normalize_json(value)
    except (TypeError, ValueError) as exc:
        refused = TypeError if isinstance(exc, TypeError) else ValueError
        raise refused(f"{what} cannot be stored as JSON: {exc}") from exc


def storable_return_value(value: Any, task_path: str) -> Any:
    """``value`` as it will read back, or an error saying why it cannot be kept.

    What Django refuses raises what Django raises (a ``TypeError``, "Unsupported
    type: ..."); what Django keeps but no database can store (NaN, an infinity, a
    NUL character, a lone surrogate) raises :class:`InvalidReturnValue`.
    """
    what = f"The return value of {task_path}"
    if not _reads_back_as_is(value):
        value = normalized_as_django_does(value, what)
        try:
            value = _round_trip(value)
        except (TypeError, ValueError) as exc:
            raise InvalidReturnValue(f"{what} must be JSON-serialisable: {exc}") from exc
    found = unstorable_character(value)
    if found:
        raise InvalidReturnValue(
            f"The return value of {task_path} contains {found}, which the database cannot store; "
            "return text without it (or encode it, e.g. as base64)."
        )
    return value


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
        "message": storable_text(str(exc)),
        "traceback": storable_text("".join(traceback.format_exception(exc))),
        "worker_id": worker_id,
        "attempt": attempt,
        "at": at.isoformat(),
    }
