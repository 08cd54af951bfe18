"""JSON request bodies with a bounded nesting depth.

Python's ``json`` module recurses once per nesting level: a body a few KB long,
nested a thousand levels deep, raises ``RecursionError`` in the parser (a 500),
and a payload a little less deep is stored, then breaks every page that renders
it. Bodies nested deeper than ``API_MAX_PAYLOAD_DEPTH`` are refused with a 400,
before the parser recurses, by a scan of the raw text that counts brackets.
"""

from __future__ import annotations

import io
import re
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from django_bourbon_jobs.conf import get_settings

_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def nesting_depth(raw: bytes) -> int:
    """The deepest bracket nesting of a JSON text; brackets inside strings do not count."""
    depth = deepest = 0
    for token in _TOKENS.finditer(raw):
        char = token.group()[:1]
        if char in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


def too_deep_message(limit: int) -> str:
    return f"JSON nested more than {limit} levels deep is not accepted (API_MAX_PAYLOAD_DEPTH)."


class BoundedJSONParser(JSONParser):
    def parse(self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read()
        limit = get_settings().API_MAX_PAYLOAD_DEPTH + 1  # the body's own object is one level
        if nesting_depth(raw) > limit:
            raise ParseError(too_deep_message(limit - 1))
        return super().parse(io.BytesIO(raw), media_type, parser_context)
