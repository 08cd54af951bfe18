"""Time-ordered, unguessable job ids (UUID version 7, RFC 9562)."""

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    """48 bits of Unix milliseconds, then 74 random bits.

    Time order keeps the primary-key index append-mostly and makes ``id`` a
    FIFO tie-breaker in the claim order; the random part keeps ids unguessable.
    """
    return uuid.UUID(int=_v7(time.time_ns() // 1_000_000, int.from_bytes(os.urandom(10), "big")))


def uuid7s(count: int) -> list[uuid.UUID]:
    """``count`` ascending UUIDv7s from one read of the random source, for a bulk dispatch.

    They share a millisecond; sorting the random parts keeps them in the order
    the payloads were given, which the claim order's ``id`` tie-break follows.
    """
    now = time.time_ns() // 1_000_000
    noise = os.urandom(10 * count)
    values = sorted(_v7(now, int.from_bytes(noise[n : n + 10], "big")) for n in range(0, 10 * count, 10))
    return [uuid.UUID(int=value) for value in values]


def _v7(milliseconds: int, random_bits: int) -> int:
    """The 128 bits: the time, then the random bits with the version and variant fields set."""
    value = milliseconds << 80 | random_bits
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    return (value & ~(0x3 << 62)) | (0x2 << 62)
