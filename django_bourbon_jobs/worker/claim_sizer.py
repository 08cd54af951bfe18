"""How many jobs the next claim asks for, and when to claim again: a pure unit, no I/O.

Claim one job per thread while the queue is short, a full batch while it is deep.
A process holding a prefetched batch makes other idle processes wait, and a
claimed job's attempt counts even before it starts; both only pay off under a
backlog, which a full claim signals. Under a backlog, the next batch is claimed
while half of this one is still queued, so executor threads never wait on the
claim's round trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ClaimSizer:
    threads: int
    batch_size: int
    size: int = field(init=False)
    """How many jobs the next claim asks for."""
    refill_below: int = field(init=False)
    """Claim again once fewer than this many claimed jobs wait for a thread."""

    def __post_init__(self) -> None:
        self.size = self.refill_below = self.threads

    def room(self, waiting: int) -> bool:
        """True when ``waiting`` claimed jobs are few enough to claim more."""
        return waiting < self.refill_below

    def claimed(self, got: int, asked: int) -> None:
        """Adapt to a claim that asked for ``asked`` jobs and got ``got``."""
        self.size = min(self.batch_size, asked * 2) if got == asked else self.threads
        self.refill_below = max(self.threads, self.size // 2)
