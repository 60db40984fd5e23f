"""Database models (SQLAlchemy 2 typed mappings)."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    Uuid,
    event,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from medscan.extensions import db


def without_nul(value: Any) -> Any:
    """``value`` with NUL characters (which PostgreSQL cannot store) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {key: without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    return value


class FileText(TypeDecorator):
    """Text taken from uploaded files (UIDs, entry names, reasons): stored even with NULs."""

    impl = Text()
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect) -> str | None:
        return without_nul(value)


class FileJSON(TypeDecorator):
    """A JSON document built from uploaded files: JSONB on PostgreSQL, stored even with NULs."""

    impl = JSON()
    cache_ok = True

    def load_dialect_impl(self, dialect):
        return dialect.type_descriptor(JSONB() if dialect.name == "postgresql" else JSON())

    def process_bind_param(self, value: Any, dialect) -> Any:
        return without_nul(value)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """ISO 8601 UTC with a ``Z`` suffix, as the API and the reports write times.

    A naive datetime is taken to be UTC already.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class ContentKind(StrEnum):
    """What a stored scan file is (``Scan.content_kind``), decided by its content."""

    DICOM = "dicom"
    ZIP = "zip"


class UTCDateTime(TypeDecorator):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def fold_for_search(text: str) -> str:
    """Case- and locale-independent search form: NFC, casefolded, ``ё`` read as ``е``."""
    return unicodedata.normalize("NFC", text).casefold().replace("ё", "е")


class TimestampMixin:
    """``created_at`` and ``updated_at`` in UTC: equal at creation, ``touch()`` on every edit."""

    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    def __init__(self, **kwargs) -> None:
        now = utcnow()
        kwargs.setdefault("created_at", now)
        kwargs.setdefault("updated_at", now)
        super().__init__(**kwargs)

    def touch(self) -> None:
        """Mark the row as edited now."""
        self.updated_at = utcnow()


class TableCount(db.Model):
    """The exact row count and a version of a table, kept by database triggers.

    An unfiltered list answers its exact ``total`` from here instead of counting a million rows
    (migration 0005). The version (migration 0006) keeps searches' totals exact; see
    ``medscan.patients.search``.
    """

    __tablename__ = "table_counts"

    table_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    row_count: Mapped[int] = mapped_column(BigInteger())
    version: Mapped[int] = mapped_column(BigInteger(), server_default="0")


class Patient(TimestampMixin, db.Model):
    """A patient whose studies are stored."""

    __tablename__ = "patients"

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text())
    # "first last", folded by fold_for_search(); written by the application, never by clients.
    search_name: Mapped[str] = mapped_column(String(201))

    scans: Mapped[list[Scan]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        Index("ix_patients_created_at_id", "created_at", "id"),
        Index(
            "ix_patients_search_name_trgm",
            "search_name",
            postgresql_using="gin",
            postgresql_ops={"search_name": "gin_trgm_ops"},
            postgresql_with={"fastupdate": "off"},
        ),
    )


@event.listens_for(Patient, "before_insert")
@event.listens_for(Patient, "before_update")
def _fold_patient_names(mapper, connection, patient: Patient) -> None:
    """Keep ``search_name`` in step with the names on every write."""
    patient.search_name = fold_for_search(f"{patient.first_name} {patient.last_name}")


class Scan(TimestampMixin, db.Model):
    """One uploaded study file (a DICOM file or a ZIP of one series) of a patient."""

    __tablename__ = "scans"

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    description: Mapped[str | None] = mapped_column(Text())
    file_name: Mapped[str] = mapped_column(String(255))
    # The stored file: a ContentKind, size, SHA-256, and the DICOM UIDs found at upload.
    content_kind: Mapped[str] = mapped_column(String(8))
    size_bytes: Mapped[int] = mapped_column(BigInteger())
    sha256: Mapped[str] = mapped_column(String(64))
    study_uid: Mapped[str | None] = mapped_column(FileText())
    series_uid: Mapped[str | None] = mapped_column(FileText())

    # The last analysis: the seven report keys, when, by which model and threshold, and why it
    # failed (None on Success).
    report_json: Mapped[dict | None] = mapped_column(FileJSON())
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    analysis_model: Mapped[str | None] = mapped_column(String(200))
    analysis_model_version: Mapped[str | None] = mapped_column(String(100))
    analysis_threshold: Mapped[float | None] = mapped_column(Float())
    analysis_error: Mapped[str | None] = mapped_column(FileText())

    patient: Mapped[Patient] = relationship(back_populates="scans")

    __table_args__ = (
        Index("ix_scans_patient_id_created_at_id", "patient_id", "created_at", "id"),
        Index("ix_scans_created_at_id", "created_at", "id"),
    )


class ScanFileDeletion(db.Model):
    """The id of a deleted scan whose stored file may still be on disk.

    A trigger writes it in the transaction that deletes the scan row (migration 0007), however
    the row goes (cascade included); ``medscan.storage`` unlinks the file, then drops this row.
    """

    __tablename__ = "scan_file_deletions"

    scan_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)


class BulkRun(db.Model):
    """One ZIP of studies, from its upload to its report, with the model that produced it.

    The row exists from the moment the upload is received: ``queued`` (waiting for a worker),
    ``running`` (``progress_*`` and ``heartbeat_at`` kept current by whoever works on it), then
    ``succeeded``, ``failed`` (with ``error``) or ``cancelled``. The counts are 0 and the model
    null until then (the model is known when the run starts).
    """

    __tablename__ = "bulk_runs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)
    file_name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))
    progress_done: Mapped[int] = mapped_column(Integer(), server_default="0", default=0)
    progress_total: Mapped[int | None] = mapped_column(Integer())
    error: Mapped[str | None] = mapped_column(Text())
    request_id: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    studies: Mapped[int] = mapped_column(Integer(), default=0)
    succeeded: Mapped[int] = mapped_column(Integer(), default=0)
    failed: Mapped[int] = mapped_column(Integer(), default=0)
    skipped: Mapped[int] = mapped_column(Integer(), default=0)
    model_name: Mapped[str | None] = mapped_column(String(200))
    model_version: Mapped[str | None] = mapped_column(String(100))
    threshold: Mapped[float | None] = mapped_column(Float())

    items: Mapped[list[BulkRunItem]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="BulkRunItem.position"
    )
    skipped_files: Mapped[list[BulkRunSkippedFile]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="BulkRunSkippedFile.position"
    )

    __table_args__ = (
        Index("ix_bulk_runs_created_at_id", "created_at", "id"),
        Index("ix_bulk_runs_status", "status"),
        Index("ix_bulk_runs_request_id_created_at_id", "request_id", "created_at", "id"),
    )


class RunChildMixin:
    """A row that belongs to one bulk run, at a position; deleted with the run."""

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("bulk_runs.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer(), primary_key=True)


class BulkRunItem(RunChildMixin, db.Model):
    """One report row of a run: the seven report keys as a JSON object, and a Failure's reason."""

    __tablename__ = "bulk_run_items"

    report: Mapped[dict] = mapped_column(FileJSON())
    error: Mapped[str | None] = mapped_column(FileText())


class BulkRunSkippedFile(RunChildMixin, db.Model):
    """A file of a run's archive that made no row (not DICOM, a symlink...), and why."""

    __tablename__ = "bulk_run_skipped_files"

    path: Mapped[str] = mapped_column(FileText())
    reason: Mapped[str] = mapped_column(FileText())
