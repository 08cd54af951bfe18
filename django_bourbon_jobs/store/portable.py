"""The store for any database Django supports: the ORM and portable SQL."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import models

INSERT_BATCH = 1000
"""Rows per INSERT statement in :meth:`PortableStore.insert_many`."""


class PortableStore:
    """Inserts through the ORM; no notifications (workers poll, or listen to Redis), no advisory locks."""

    def insert(self, job: models.Model, using: str, notify: bool) -> None:
        """Insert one job row; with ``notify``, tell the queue's listening workers once it commits."""
        job.save(force_insert=True, using=using)

    def insert_many(self, jobs: Sequence[models.Model], using: str) -> None:
        """Insert many rows of one model; call inside a transaction."""
        if jobs:
            type(jobs[0])._default_manager.db_manager(using).bulk_create(jobs, batch_size=INSERT_BATCH)

    def notify(self, using: str, queue_name: str) -> None:
        """Wake the queue's listening workers once the transaction commits (nothing here)."""

    def lock_idempotency_key(self, using: str, key: str) -> None:
        """Serialise dispatches that share ``key`` until the transaction ends.

        Nothing here: on SQLite the write lock does it (``transaction_mode = "IMMEDIATE"``).
        """
