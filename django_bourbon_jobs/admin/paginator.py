"""A paginator that never counts a whole table: it counts at most ``cap + 1`` rows."""

from __future__ import annotations

from functools import cached_property

from django.core.paginator import Paginator

COUNT_CAP = 10_000


class CappedCountPaginator(Paginator):
    """Counts up to ``cap`` rows exactly; past that it reports ``cap + 1`` and ``is_capped``.

    ``SELECT COUNT(*) FROM (SELECT 1 ... LIMIT cap + 1)`` stops after ``cap + 1`` index
    entries, so the cost is bounded however large the table. Pages beyond the cap are not
    offered; filters and search narrow the list instead.
    """

    cap = COUNT_CAP

    @cached_property
    def count(self) -> int:
        unordered = self.object_list.order_by()  # type: ignore[attr-defined]
        return int(unordered[: self.cap + 1].count())

    @property
    def is_capped(self) -> bool:
        return self.count > self.cap

    @property
    def count_label(self) -> str:
        return f"more than {self.cap:,}" if self.is_capped else f"{self.count:,}"
