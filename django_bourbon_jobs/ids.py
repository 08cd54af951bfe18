"""Time-ordered, unguessable job ids (UUID version 7, RFC 9562)."""

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    """48 bits of Unix milliseconds, then 74 random bits.

    Time order keeps the primary-key index append-mostly and makes ``id`` a
    FIFO tie-breaker in the claim order; the random part keeps ids unguessable.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return uuid.UUID(int=value)
