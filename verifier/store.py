"""Transitional shim: the old `store` API over `verifier.db` and `verifier.repos.registry`.

For the modules not yet moved onto them during the architecture groundwork; new code imports
`db` and `repos.registry` directly. `connect` still returns the sqlite-utils wrapper (`.conn`,
`.execute`, `.query`) the old callers expect; every other function also takes a plain
connection. The lead removes this module, and the sqlite-utils dependency with it, at the end.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import sqlite_utils

from . import clock, db
from .db import (  # noqa: F401 - re-exported
    BUSY_TIMEOUT_MS,
    CHECKPOINT_EVERY_COMMITS,
    MIGRATIONS,
    WRITER_LOCK_SUFFIX,
    Connection,
    StoreError,
    configure,
)
from .repos import registry
from .repos.registry import (  # noqa: F401 - re-exported
    BATCH_ACTIVE,
    BATCH_ISSUING,
    BATCH_RECALLED,
    BATCH_VIEW,
    validate_credit_code,
)

Wrapped = sqlite_utils.Database | sqlite3.Connection


def _conn(x: Wrapped) -> sqlite3.Connection:
    return x.conn if isinstance(x, sqlite_utils.Database) else x


def connect(path: Path | str, *, create: bool = True) -> sqlite_utils.Database:
    """`db.connect`, wrapped as before."""
    return sqlite_utils.Database(db.connect(path, create=create))


def transaction(x: Wrapped) -> AbstractContextManager[sqlite3.Connection]:
    return db.transaction(_conn(x))


def migrate(x: Wrapped) -> list[str]:
    return db.migrate(_conn(x))


def now_text(now: dt.datetime | None = None) -> str:
    return clock.utc_text_seconds(now or clock.now())


def ensure_enterprise(x: Wrapped, name: str, credit_code: str | None = None) -> int:
    return registry.ensure_enterprise(_conn(x), name, credit_code, clock.now())


def ensure_product(x: Wrapped, enterprise_id: int, name: str, spec: str = "", gtin: str | None = None) -> int:
    return registry.ensure_product(_conn(x), enterprise_id, name, spec, gtin, clock.now())


def insert_codes(conn: sqlite3.Connection, batch_id: int, serials: Iterable[int]) -> None:
    registry.insert_codes(conn, batch_id, serials)


def serials_taken(conn: sqlite3.Connection, serials: list[int]) -> set[int]:
    return registry.serials_taken(conn, serials)


def batch_row(x: Wrapped, batch_id: int) -> dict[str, Any]:
    return registry.batch_row(_conn(x), batch_id)


def list_batches(x: Wrapped, enterprise: str | None = None) -> list[dict[str, Any]]:
    return registry.list_batches(_conn(x), enterprise)


def get_batch(x: Wrapped, batch_id: int) -> dict[str, Any]:
    return registry.get_batch(_conn(x), batch_id)


def recall_batch(
    x: Wrapped, batch_id: int, reason: str, now: dt.datetime | None = None, actor: str = ""
) -> dict[str, Any]:
    from . import issue

    return issue.recall_batch(_conn(x), batch_id, reason, now or clock.now(), actor)


def batch_serials(x: Wrapped, batch_id: int) -> Iterator[int]:
    return registry.batch_serials(_conn(x), batch_id)
