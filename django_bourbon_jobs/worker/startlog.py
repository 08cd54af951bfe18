"""Which claimed jobs a worker process has started, kept where its supervisor can read it.

A claim charges an attempt to every job it takes (one durable statement), and a
process that stops in order hands back the jobs it had not started, refunded
(``JobQuerySet.release``). A process that dies says nothing; its supervisor then
reads this log, written in memory shared with it (an anonymous ``mmap`` made
before the fork) just before each job's code starts. Jobs the dead process held
but never started go back uncharged and without an error; only those it started
are charged, and told how the process ended. A job whose code had returned but
whose outcome was not stored yet is not to blame either: it runs again with its
attempt given back, and an error that says so. Recording a start or an end copies a few bytes: no
database, no system call, no lock.

Each executor thread writes to a ring of its own slots, so a job's id stays
readable until that thread has started :attr:`StartLog.ring` more jobs: more than
a process can hold unwritten (a claim is at most ``BATCH_SIZE`` and the next one
waits for half of it). The header holds the process's last measured resident
memory, so a supervisor can say how big a process was when the kernel killed it.
"""

from __future__ import annotations

import mmap
import struct
import uuid

_ID = 16
_SLOT = 24
"""A job id, then one state byte (:data:`RUNNING` or :data:`RETURNED`), then padding."""
_STATE = _ID
RUNNING = 1
RETURNED = 2
_HEADER = struct.Struct("<Q")
_EMPTY = bytes(_SLOT)


class StartLog:
    def __init__(self, threads: int, batch_size: int) -> None:
        self.threads = threads
        self.ring = 2 * batch_size + 16
        self._memory = mmap.mmap(-1, _HEADER.size + threads * self.ring * _SLOT)
        self._next = [0] * threads
        self._slots: dict[int, tuple[int, bytes]] = {}
        """Each recorded job's slot and id bytes, by ``job_id.int`` (hashing a UUID is Python code)."""

    def record(self, thread: int, job_id: uuid.UUID) -> None:
        """Called by executor thread ``thread`` (only) before the job's code runs."""
        slot = self._next[thread]
        self._next[thread] = (slot + 1) % self.ring
        offset = _HEADER.size + (thread * self.ring + slot) * _SLOT
        raw = job_id.bytes
        self._memory[offset : offset + _ID] = raw
        self._memory[offset + _STATE] = RUNNING
        self._slots[job_id.int] = (offset, raw)

    def mark_returned(self, job_id: uuid.UUID) -> None:
        """The job's code returned (or raised): from now on a death of the process is not its doing."""
        offset = self._holding(self._slots.get(job_id.int))
        if offset is not None:
            self._memory[offset + _STATE] = RETURNED

    def forget(self, job_id: uuid.UUID) -> None:
        """The attempt's outcome is stored: should the job be claimed again, it has not started."""
        offset = self._holding(self._slots.pop(job_id.int, None))
        if offset is not None:
            self._memory[offset : offset + _SLOT] = _EMPTY

    def _holding(self, slot: tuple[int, bytes] | None) -> int | None:
        """The slot's offset if it still holds the job (a ring that went round may have reused it)."""
        if slot is None or self._memory[slot[0] : slot[0] + _ID] != slot[1]:
            return None
        return slot[0]

    def running(self) -> set[uuid.UUID]:
        """The jobs whose code was running in this process: started and not yet returned."""
        return self._in_state(RUNNING)

    def returned(self) -> set[uuid.UUID]:
        """The jobs whose code returned but whose outcome this process had not stored yet."""
        return self._in_state(RETURNED)

    def _in_state(self, state: int) -> set[uuid.UUID]:
        ids = set()
        for offset in range(_HEADER.size, len(self._memory), _SLOT):
            if self._memory[offset + _STATE] == state:
                ids.add(uuid.UUID(bytes=self._memory[offset : offset + _ID]))
        return ids

    def record_rss(self, rss_bytes: int) -> None:
        _HEADER.pack_into(self._memory, 0, rss_bytes)

    def last_rss(self) -> int:
        return int(_HEADER.unpack_from(self._memory, 0)[0])

    def close(self) -> None:
        self._memory.close()
