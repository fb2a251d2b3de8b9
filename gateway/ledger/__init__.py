"""The ledger: what the gateway has seen, decided and delivered — identifiers only.

SQLAlchemy 2 over SQLite (WAL) by default, PostgreSQL for several workers. It
holds SHA-256s, batch and case ids, case -> agency/contract assignments,
deliveries and receipts; never a name, number or address. Exactly-once rests on
one unique row per file *content* (``files.sha256``): claiming inserts it, and a
second arrival of the same bytes finds it.

This module is the face: :class:`Ledger` is the stores, one module each, over one
:class:`~gateway.ledger.core.Core` (the engine, its transactions, its clock):

=============================  ==========================================================
:mod:`~gateway.ledger.schema`  the tables, row types, statuses and the ledger's errors
:mod:`~gateway.ledger.claims`  claims on files, leases on other work, a file's history
:mod:`~gateway.ledger.commits` a file's staged work and its commit (both flows)
:mod:`~gateway.ledger.documents` the agency's acknowledgements and deletion attestations
:mod:`~gateway.ledger.unmasking` unmask requests, approvers' decisions, one-off releases
:mod:`~gateway.ledger.outbox`  deliveries and receipts not yet placed; collections
:mod:`~gateway.ledger.accounts` console accounts
:mod:`~gateway.ledger.retention` purges and what they deleted
:mod:`~gateway.ledger.monitoring` zone health, refused files, sshd log cursors
:mod:`~gateway.ledger.forwarding` how far each audit log has reached each SIEM destination
:mod:`~gateway.ledger.alerting` alerts, their notices to each channel, the engine's cursors
:mod:`~gateway.ledger.dialects` the SQL in which SQLite and PostgreSQL differ, one object each
=============================  ==========================================================

It imports nothing from the zones, the flows, the crypto or the audit log; the read model
that joins it with the audit log and the keyring is :mod:`gateway.queries`, above it.
"""

from __future__ import annotations

from gateway.ledger.accounts import AccountStore
from gateway.ledger.alerting import AlertStore
from gateway.ledger.claims import ClaimStore
from gateway.ledger.commits import CommitStore
from gateway.ledger.documents import DocumentStore
from gateway.ledger.forwarding import ForwardStore
from gateway.ledger.monitoring import MonitoringStore, ZoneSeen
from gateway.ledger.outbox import OutboxStore
from gateway.ledger.retention import RetentionStore
from gateway.ledger.schema import (
    AccessCursorRow,
    AccountChange,
    AccountRow,
    AgencyDocumentRow,
    AlertCursorRow,
    AlertMessageRow,
    AlertRow,
    AttemptRow,
    Base,
    BatchRow,
    CaseRow,
    Claim,
    ClaimOutcome,
    CommitConflict,
    DeliveryRow,
    FileEnd,
    FileRow,
    FileSeen,
    FileStatus,
    ForwardCursorRow,
    LeaseLost,
    LeaseRow,
    LedgerError,
    PurgeObjectRow,
    PurgeRow,
    ReceiptProgress,
    ReceiptRow,
    RefusedFileRow,
    ResultFlagRow,
    ResultsEnd,
    StagedAttemptRow,
    StagedCaseRow,
    UnmaskCaseRow,
    UnmaskDecisionRow,
    UnmaskRequestRow,
    UnmaskStatus,
    ZoneStatusRow,
    utcnow,
)
from gateway.ledger.unmasking import Decided, DecisionRefused, UnmaskStore

__all__ = [
    "AccessCursorRow", "AccountChange", "AccountRow", "AgencyDocumentRow", "AlertCursorRow",
    "AlertMessageRow", "AlertRow",
    "AttemptRow", "Base", "BatchRow", "CaseRow",
    "Claim", "ClaimOutcome", "CommitConflict", "Decided", "DecisionRefused",
    "DeliveryRow", "FileEnd", "FileRow", "FileSeen",
    "FileStatus", "ForwardCursorRow", "LeaseLost", "LeaseRow", "Ledger", "LedgerError",
    "PurgeObjectRow", "PurgeRow",
    "ReceiptProgress", "ReceiptRow", "RefusedFileRow", "ResultFlagRow", "ResultsEnd",
    "StagedAttemptRow", "StagedCaseRow", "UnmaskCaseRow", "UnmaskDecisionRow",
    "UnmaskRequestRow", "UnmaskStatus", "ZoneSeen", "ZoneStatusRow", "utcnow",
]


class Ledger(UnmaskStore, DocumentStore, CommitStore, ClaimStore, OutboxStore, AccountStore, RetentionStore,
             MonitoringStore, ForwardStore, AlertStore):
    """The few queries the flows need, each in its own short transaction."""
