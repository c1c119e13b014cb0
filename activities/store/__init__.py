"""The SQL store: change log, approval records, incident records, kill switch, bot and LLM state,
learned outcomes and policy state, the intake's outbox.

SQLAlchemy Core over SQLite (default) or PostgreSQL (psycopg 3), with the same schema and queries.
The change log and approval records are append-only, enforced by triggers in the database itself
(and, on PostgreSQL, by a run-time role that may only SELECT and INSERT them); the change log is
hash-chained so a rewrite that bypasses both still shows. A rollback is a new change that names the
one it undoes (``rollback_of``). One module per job; ``Store`` is all of them over one engine.
"""

from activities.store.approvals import Approvals
from activities.store.base import StoreBase, StoreError, engine_url
from activities.store.changes import ChangeLog
from activities.store.control import Control
from activities.store.findings import Findings
from activities.store.incidents import Incidents
from activities.store.learning import Learning, PolicyStateError
from activities.store.llm import LLMLedger
from activities.store.locks import TargetLocks
from activities.store.outbox import AlertOutbox
from activities.store.problems import Problems
from activities.store.schema import MIGRATIONS
from activities.store.telegram import TelegramState


class Store(
    ChangeLog,
    Approvals,
    Incidents,
    Control,
    TargetLocks,
    Problems,
    TelegramState,
    LLMLedger,
    Findings,
    Learning,
    AlertOutbox,
    StoreBase,
):
    """Synchronous store; activities call it through ``asyncio.to_thread``."""


__all__ = ["MIGRATIONS", "PolicyStateError", "Store", "StoreError", "engine_url"]
