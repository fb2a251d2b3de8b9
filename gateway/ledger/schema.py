"""The ledger's tables and row types, and the errors its stores raise."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, TypedDict, TypeVar

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from gateway import clock
from gateway.errors import GatewayError
from gateway.names import display_name, raw_name

T = TypeVar("T")


utcnow = clock.now  # the ledger's rows and the console stamp with the one clock
GENESIS_HASH = "0" * 64  # the audit chain's "previous" of its first entry (gateway.audit.GENESIS)


class FileName(TypeDecorator[str]):
    """A zone file name as a sender chose it — newline, backslash, bytes that are not
    UTF-8 and all. Stored in its reversible printable spelling
    (:func:`~gateway.names.display_name`), so no name can fail to encode in a
    query, and read back as the real name the zone knows."""

    impl = String(1024)  # a 255-byte name, escaped, fits
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else display_name(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else raw_name(value)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Every time in the ledger is UTC. SQLite keeps no offset: an aware time in another
    zone (a local clock) would come back as a different instant, so times are converted
    to UTC on the way in, and come back aware (UTC) from either database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None or value.tzinfo is None:
            return value  # naive: UTC already, by the convention of the code that made it
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None,
                             dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class LedgerError(GatewayError):
    """The ledger database failed."""

    code = "E_LEDGER"


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UTCDateTime}


class FileStatus(StrEnum):
    CLAIMED = "claimed"  # being processed (a lease holder works on it)
    ACCEPTED = "accepted"
    PARTIAL = "partial"  # skip_rows: some rows delivered, the rest reported
    REJECTED = "rejected"


class FileRow(Base):
    """One distinct file content that arrived in a zone."""

    __tablename__ = "files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # case_file | results
    zone: Mapped[str] = mapped_column(String(80))  # config key path, e.g. bank.outgoing
    name: Mapped[str] = mapped_column(FileName)
    size: Mapped[int] = mapped_column(BigInteger)
    agency_code: Mapped[str | None] = mapped_column(String(32))  # sender, for results
    status: Mapped[str] = mapped_column(String(16), default=FileStatus.CLAIMED.value)
    batch_id: Mapped[str | None] = mapped_column(String(64))
    signer: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(48))
    records: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[dt.datetime | None]
    archive_name: Mapped[str | None] = mapped_column(String(255))
    purged_at: Mapped[dt.datetime | None]


class BatchRow(Base):
    """An accepted (or partially accepted) bank batch; its id is unique for the bank."""

    __tablename__ = "batches"
    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id"))
    status: Mapped[str] = mapped_column(String(16))
    records: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[int] = mapped_column(Integer)
    committed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CaseRow(Base):
    """A case delivered to an agency under a contract (no personal value, only the id)."""

    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.batch_id"))
    agency_code: Mapped[str] = mapped_column(String(32))
    contract_id: Mapped[str] = mapped_column(String(64))
    assigned_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    purged_at: Mapped[dt.datetime | None]

    __table_args__ = (
        # case_id is unique across *live* cases (docs/formats.md §2); a purged case's id may return.
        Index("ux_cases_live", "case_id", unique=True, sqlite_where=text("purged_at IS NULL")),
        # purged_at too: the ownership check is answered from the index alone (0007)
        Index("ix_cases_agency", "agency_code", "case_id", "purged_at"),
    )


class StagedCaseRow(Base):
    """A case id seen in a file being processed; moved to ``cases`` when the file commits."""

    __tablename__ = "staged_cases"
    file_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # the claim (0008)
    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    row: Mapped[int] = mapped_column(Integer)
    agency_code: Mapped[str] = mapped_column(String(32))
    contract_id: Mapped[str] = mapped_column(String(64))
    __table_args__ = ({"sqlite_with_rowid": False},)  # rows in the key's b-tree (0007)


class DeliveryRow(Base):
    """A file the gateway placed (or is about to place) in an agency's inbox."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int | None] = mapped_column(ForeignKey("files.id"))
    # slice | manifest | results | certificate | checkpoint
    kind: Mapped[str] = mapped_column(String(16), default="slice")
    batch_id: Mapped[str | None] = mapped_column(String(64))
    agency_code: Mapped[str] = mapped_column(String(32))
    role: Mapped[str | None] = mapped_column(String(32))  # None for a manifest
    zone: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(255), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))  # of the ciphertext
    size: Mapped[int] = mapped_column(BigInteger)
    records: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[dt.datetime | None]  # None: committed, not yet moved into the inbox
    collected_at: Mapped[dt.datetime | None]
    purged_at: Mapped[dt.datetime | None]
    acknowledged_at: Mapped[dt.datetime | None]  # by the agency's kit, slices and manifests (0012)


class AgencyDocumentRow(Base):
    """A signed document an agency sent and the gateway accepted: an acknowledgement of one
    batch's files, or the attestation that a contract's files were destroyed (0012).
    Identifiers, counts and times only; the file it came in is ``file_id``."""

    __tablename__ = "agency_documents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    doc_id: Mapped[str] = mapped_column(String(32), unique=True)  # the document's own id
    kind: Mapped[str] = mapped_column(String(16))  # acknowledgement | attestation
    agency_code: Mapped[str] = mapped_column(String(32))
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id"))
    contract_id: Mapped[str | None] = mapped_column(String(64))  # attestations
    batch_id: Mapped[str | None] = mapped_column(String(64))  # acknowledgements
    created_at: Mapped[dt.datetime]  # as the agency's kit wrote it
    accepted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    listed: Mapped[int] = mapped_column(Integer)  # files the document lists
    # attestations: files delivered to the agency that the attestation does not list
    not_listed: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_agency_documents_agency", "agency_code", "kind"),)


class UnmaskStatus(StrEnum):
    """Where an unmask request stands (docs/operations.md, "Unmasking by approval")."""

    PENDING = "pending"  # accepted, waiting for approvers
    APPROVED = "approved"  # enough approvals; the daemon's next pass releases it
    DENIED = "denied"  # one approver said no
    EXPIRED = "expired"  # not decided in time (or its agency's data purged first)
    FAILED = "failed"  # approved, but it can no longer be released as approved (the contract
    # ended, the key or the configuration changed, the batch is gone): the agency is told
    RELEASED = "released"  # the one-off slice is sealed and delivered
    PURGED = "purged"  # the one-off slice's expiry passed; deleted from the inbox


class UnmaskRequestRow(Base):
    """An agency's request to see named cases' fields unmasked, and what became of it
    (0013). Identifiers, counts and times — and the requester's note, text of at most 500
    characters the request flow refuses if it holds a long number."""

    __tablename__ = "unmask_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(32), unique=True)  # the agency's own id
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id"))  # the request as received
    agency_code: Mapped[str] = mapped_column(String(32))
    contract_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    signer: Mapped[str] = mapped_column(String(64))  # the requester's key
    purpose: Mapped[str] = mapped_column(String(32))
    fields: Mapped[str] = mapped_column(Text)  # canonical field names, comma-separated
    cases: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime]  # as the agency wrote it
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decide_by: Mapped[dt.datetime]  # undecided after this: expired
    approvals_needed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=UnmaskStatus.PENDING.value)
    decided_at: Mapped[dt.datetime | None]
    notified_at: Mapped[dt.datetime | None]  # a denial or expiry told to the agency
    released_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime | None]  # of the released one-off slice
    purged_at: Mapped[dt.datetime | None]
    # the audit entries of the release and of its deletion, written after the commit and
    # marked here: a pass killed between the two writes the entry at the next pass
    release_audited_at: Mapped[dt.datetime | None]
    purge_audited_at: Mapped[dt.datetime | None]
    # the expiry's deletions as planned before any is done (JSON: zone, name, size, sha256,
    # state): a pass killed half-way finishes the same plan, and the certificate says it
    purge_plan: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_unmask_requests_status", "status", "agency_code"),)

    @property
    def field_list(self) -> list[str]:
        return self.fields.split(",") if self.fields else []

    @property
    def batch_id(self) -> str:
        """The one-off slice's batch name: ``unmask-<n>`` (bank batch names never begin
        so: the bank's intake refuses them)."""
        return f"{UNMASK_BATCH_PREFIX}{self.id}"


UNMASK_BATCH_PREFIX = "unmask-"
INBOX_KINDS = ("slice", "manifest", "notice")  # what the gateway places in an agency's inbox


class UnmaskCaseRow(Base):
    """A case named by an unmask request, and the batch it came in (0013)."""

    __tablename__ = "unmask_cases"
    request: Mapped[int] = mapped_column(ForeignKey("unmask_requests.id"), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(64))


class UnmaskDecisionRow(Base):
    """One approver's decision on one request (0013): an account decides a request once."""

    __tablename__ = "unmask_decisions"
    request: Mapped[int] = mapped_column(ForeignKey("unmask_requests.id"), primary_key=True)
    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    decision: Mapped[str] = mapped_column(String(8))  # approve | deny
    reason: Mapped[str] = mapped_column(Text, default="")
    decided_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ReceiptRow(Base):
    """One receipt per arrival — duplicates included, so nothing goes unanswered.

    Sending is two-phase: the row is committed with the sealed receipt staged
    (``sent_at`` None), then the receipt is written to the zone and the input
    removed; a crash in between is finished by the next run.
    """

    __tablename__ = "receipts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int | None] = mapped_column(ForeignKey("files.id"))
    file_sha256: Mapped[str] = mapped_column(String(64), index=True)
    input_zone: Mapped[str] = mapped_column(String(80))
    input_name: Mapped[str] = mapped_column(FileName)
    zone: Mapped[str] = mapped_column(String(80))
    name: Mapped[str | None] = mapped_column(String(255))  # chosen when sent
    staged: Mapped[str] = mapped_column(String(255))  # file name under the staging directory
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    input_removed_at: Mapped[dt.datetime | None]


class AttemptRow(Base):
    """Calls/messages per case and local day, across result files (the ATTEMPTS flag)."""

    __tablename__ = "attempts"
    agency_code: Mapped[str] = mapped_column(String(32), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, gateway zone
    count: Mapped[int] = mapped_column(Integer, default=0)
    __table_args__ = ({"sqlite_with_rowid": False},)  # rows in the key's b-tree (0007)


class StagedAttemptRow(Base):
    """A results file's CALL/SMS counts per case and day while it is processed, chunk by
    chunk; added to ``attempts`` when the file commits (memory stays flat)."""

    __tablename__ = "staged_attempts"
    file_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # the claim (0008)
    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    __table_args__ = ({"sqlite_with_rowid": False},)  # rows in the key's b-tree (0007)


class AccountRow(Base):
    """A console account (docs/security-team.md). The password only as an Argon2id hash; the TOTP
    secret as it must be to check a code; *last_step* the TOTP time step last accepted
    (a code works once); *failures* since the last good login (5 lock it);
    *sessions_from*: a session begun before it is void (a logout, a reset)."""

    __tablename__ = "console_accounts"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # auditor | operator | approver
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret: Mapped[str] = mapped_column(String(64))
    disabled: Mapped[bool] = mapped_column(default=False)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None]
    last_step: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None]
    sessions_from: Mapped[dt.datetime | None]  # sessions begun earlier are void (logout, reset)


class ResultFlagRow(Base):
    """How many accepted rows of a results file carry each flag (docs/formats.md §4), and how many were
    refused as ``NOT_ASSIGNED`` — the Compliance page's figures, kept with no case in them."""

    __tablename__ = "result_flags"
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id"), primary_key=True)
    flag: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class AccessCursorRow(Base):
    """How far a node has read internal-sftp's log (docs/security-team.md): the file's inode, the offset
    after the last whole line, and the parser's open sessions as JSON."""

    __tablename__ = "access_cursors"
    source: Mapped[str] = mapped_column(String(300), primary_key=True)  # "<node>:<path>"
    inode: Mapped[int | None] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(Text, default="{}")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ForwardCursorRow(Base):
    """How far a node's audit log has reached one ``[[forward]]`` destination: the last
    entry the receiver confirmed (its seq and hash; the byte offset after it is a hint
    for reading on), and the destination's last error, for `gateway status`."""

    __tablename__ = "forward_cursors"
    destination: Mapped[str] = mapped_column(String(32), primary_key=True)
    node: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    delivered_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_error_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AlertRow(Base):
    """An alert (docs/operations.md, "Alerts"): a condition, by its stable key (rule and
    subject: ``key_expiring:<fingerprint>``, ``zone_down:<zone>``; never personal data),
    open from *opened_at* until it clears. At most one open row per key (a partial unique
    index); a cleared one stays as history. *oneshot*: an event (a ``security.*`` entry, a
    rejected file) that clears itself once its messages are sent. *remind_at*: when the
    next reminder is due while open."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_open_key", "key", unique=True, sqlite_where=text("cleared_at IS NULL")),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    rule: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(160))
    detail: Mapped[str] = mapped_column(String(500), default="")
    node: Mapped[str] = mapped_column(String(128))  # the node that opened it
    oneshot: Mapped[bool] = mapped_column(default=False)
    opened_at: Mapped[dt.datetime]
    remind_at: Mapped[dt.datetime | None]
    cleared_at: Mapped[dt.datetime | None]


class AlertMessageRow(Base):
    """One notice of an alert (``opened``, ``reminder``, ``escalated``, ``cleared``) to one
    channel (``email``, ``webhook<i>``): the alerts' outbox. The delivery thread sends what
    is due and sets *sent_at*; a failure counts *attempts*, keeps *last_error* and puts
    *next_try_at* off (back-off) — a notice is never dropped."""

    __tablename__ = "alert_messages"
    __table_args__ = (Index("ix_alert_messages_unsent", "sent_at", "next_try_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    next_try_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
    sent_at: Mapped[dt.datetime | None]
    recipients: Mapped[int] = mapped_column(Integer, default=0)


class AlertCursorRow(Base):
    """How far a node's alert engine has read its audit log (the event rules)."""

    __tablename__ = "alert_cursors"
    node: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PurgeRow(Base):
    """One purge per contract: planned first, executed object by object, then certified."""

    __tablename__ = "purges"
    contract_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agency_code: Mapped[str] = mapped_column(String(32))
    effective_end: Mapped[str] = mapped_column(String(10))
    deadline: Mapped[str] = mapped_column(String(10))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
    late: Mapped[bool] = mapped_column(default=False)
    cases: Mapped[int] = mapped_column(Integer, default=0)
    certificate: Mapped[str | None] = mapped_column(String(255))


class PurgeObjectRow(Base):
    """Something a purge deletes: a zone file, an archived ciphertext, a token key."""

    __tablename__ = "purge_objects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("purges.contract_id"), index=True)
    location: Mapped[str] = mapped_column(String(80))  # zone key, or state:archive / state:quarantine …
    name: Mapped[str] = mapped_column(FileName)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="planned")  # planned|deleted|absent
    deleted_at: Mapped[dt.datetime | None]


class ZoneStatusRow(Base):
    """What the daemon last saw of each zone, for `gateway status`."""

    __tablename__ = "zone_status"
    zone: Mapped[str] = mapped_column(String(80), primary_key=True)
    description: Mapped[str] = mapped_column(String(255))
    last_scan_at: Mapped[dt.datetime | None]
    waiting: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_error_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ZoneRenameRow(Base):
    """What a zone named by list position became when zones were named by agency code
    (migration 0009): audit entries older than that name zones the old way."""

    __tablename__ = "zone_renames"
    old: Mapped[str] = mapped_column(String(80), primary_key=True)  # agencies[0].inbox
    new: Mapped[str] = mapped_column(String(80))  # AG001.inbox


class RefusedFileRow(Base):
    """An entry in a zone the gateway will not read (a symlink, a FIFO, a file it may not
    open): audited once as ``file.refused`` and listed by `gateway status` until it goes."""

    __tablename__ = "refused_files"
    zone: Mapped[str] = mapped_column(String(80), primary_key=True)
    name: Mapped[str] = mapped_column(FileName, primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    first_seen: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LeaseRow(Base):
    """A work item one node is doing: a pending delivery (``delivery:<id>``), a receipt to
    send (``receipt:<id>``), a purge (``purge:<contract>``). Input files keep theirs in
    ``files``. A lease past ``until`` is free for another node to take over."""

    __tablename__ = "leases"
    item: Mapped[str] = mapped_column(String(160), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    until: Mapped[dt.datetime]
    taken_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LeaseLost(GatewayError):
    """Another node took over a file this node was processing (its lease ran out — this node
    could not renew it in time): this node's result is dropped, theirs counts."""

    code = "E_LEASE_LOST"


class CommitConflict(LedgerError):
    """Another node committed, meanwhile, something this commit contradicts — the same
    case id in a batch, the same batch id, an attempt count, a delivery's name. Nothing
    of this commit was kept; processing the file again sees the other node's work."""

    code = "E_COMMIT_CONFLICT"


class ClaimOutcome(StrEnum):
    NEW = "new"  # this caller owns the file now
    DUPLICATE = "duplicate"  # the same content was already finished
    BUSY = "busy"  # another worker holds a live lease on it
    RESUMED = "resumed"  # a previous attempt died (lease expired); this caller takes over


class _FileSeen(TypedDict):
    sha256: str
    kind: str  # case_file | results
    zone: str
    name: str
    size: int


class FileSeen(_FileSeen, total=False):
    """A file content as it arrived, to be claimed: its :class:`FileRow`'s first columns."""

    agency_code: str | None  # the sender, for results


class FileEnd(TypedDict, total=False):
    """What a file's row records when its claim ends, besides its status: the columns of
    :class:`FileRow` the flows set then, and only those (the rest are the claim's)."""

    batch_id: str | None
    signer: str | None
    error_code: str | None
    records: int
    accepted: int
    rejected: int
    archive_name: str | None


class ResultsEnd(FileEnd, total=False):
    """A results file's end: its row's, and how many accepted rows carry each flag."""

    flags: dict[str, int] | None


class ReceiptProgress(TypedDict, total=False):
    """The columns of :class:`ReceiptRow` that sending it moves on, one step at a time."""

    name: str | None
    sent_at: dt.datetime | None
    input_removed_at: dt.datetime | None


class AccountChange(TypedDict, total=False):
    """The columns of :class:`AccountRow` the console changes (a reset, a disabling, a
    logout, a rehashed password); a login's counters have their own transactions."""

    password_hash: str
    totp_secret: str
    disabled: bool
    failures: int
    locked_until: dt.datetime | None
    last_step: int | None
    sessions_from: dt.datetime | None


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    file_id: int
    status: str

