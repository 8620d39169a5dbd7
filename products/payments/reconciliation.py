"""Daily reconciliation of our card-less payments (QR and payment code) and their refunds against
the acquiring channel's statement file, with exceptions resolved once each by a named user and an
audit trail.

One unit of work per call. A file is *received* (parsed in full, refused as a whole if malformed,
its lines stored in ``payments_recon_lines`` with one bulk insert: ``COPY`` on PostgreSQL, one
``executemany`` on SQLite) and *reconciled* by a fixed number of set-based statements, whatever
the number of lines: four ``INSERT ... SELECT`` (the file's credits left-joined to our payments,
its debits to our refunds; our payments and refunds of the day the file does not list) and three
counting queries. No statement is issued per line. See ``docs/reconciliation.md``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import String, and_, case, cast, exists, func, insert, literal, null, or_, select
from sqlalchemy.exc import IntegrityError

from core.errors import Conflict, NotFound, ValidationFailed
from core.modules import JobSpec
from core.tenancy import UnitOfWork
from infra.ledger import EntryDraft, Ledger, OwnerType, Posting
from products.payments.models import Payment, ReconAudit, ReconException, ReconLine, ReconRun, Refund
from products.payments.recon_files import FORMATS, StatementLine, parse_statement
from products.payments.service import new_no
from products.payments.settings import PaymentsSettings

log = structlog.get_logger("sceneos.payments.reconciliation")

KINDS = ("missing_in_channel", "missing_in_ours", "amount_over", "amount_under", "currency_mismatch",
         "status_mismatch", "duplicate_in_channel")
ACTIONS = ("accept", "write_off", "fixed")
# Our payments the channel must list: those that moved (or are moving) money.
EXPECTED_STATUSES = ("succeeded", "pending")
# The default accounts (settings ``recon_write_off_account`` and ``recon_clearing_account``).
WRITE_OFF_ACCOUNT = PaymentsSettings.model_fields["recon_write_off_account"].default
CLEARING_ACCOUNT = PaymentsSettings.model_fields["recon_clearing_account"].default
MAX_FILE_BYTES = 1024 * 1024 * 1024  # a camt.053 of a million entries is ~270 MB
ACTOR = re.compile(r"^[A-Za-z0-9_.@:-]{1,64}$")
FILE_NAME = re.compile(r"^[^\x00-\x1f/\\]{1,200}$")


class AlreadyResolved(Conflict):
    code = "already_resolved"


class CannotWriteOff(ValidationFailed):
    code = "cannot_write_off"


class NotFixed(ValidationFailed):
    code = "not_fixed_by_later_file"


class NoStatementFile(NotFound):
    code = "no_statement_file"


# --- views -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReconRunView:
    run_no: str
    business_date: date
    file_name: str
    file_format: str
    file_digest: str
    status: str
    line_count: int
    our_count: int | None
    matched_count: int | None
    exception_count: int | None
    open_count: int | None
    summary: dict[str, int]
    received_by: str
    received_at: datetime
    reconciled_at: datetime | None
    # The run's parsed lines were deleted then (recon_line_retention_days); None: still kept.
    lines_purged_at: datetime | None = None


@dataclass(frozen=True)
class ReconExceptionView:
    exception_no: str
    run_no: str
    kind: str
    payment_no: str | None
    line_no: int | None
    channel_ref: str | None
    our_amount_minor: int | None
    our_currency: str | None
    our_status: str | None
    channel_amount_minor: int | None
    channel_currency: str | None
    channel_status: str | None
    difference_minor: int | None
    resolution: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution_note: str | None
    ledger_entry_id: str | None
    fixed_by_run_no: str | None
    refund_no: str | None = None


@dataclass(frozen=True)
class ReconAuditView:
    run_no: str
    exception_no: str | None
    action: str
    actor: str
    note: str | None
    ledger_entry_id: str | None
    at: datetime


# --- the service -----------------------------------------------------------------------------------


class ReconciliationService:
    """Reconciliation of one tenant's payments within one unit of work."""

    def __init__(self, uow: UnitOfWork, settings: PaymentsSettings) -> None:
        self.uow = uow
        self.session = uow.session
        self.settings = settings
        self.tenant = uow.tenant

    # --- receiving and reconciling ---------------------------------------------------------------

    def receive(self, business_date: date, content: bytes, file_format: str, *, file_name: str, actor: str,
                reconcile: bool = True) -> tuple[ReconRunView, bool]:
        """Receive the channel's statement file for ``business_date`` and (by default) reconcile it.

        The same bytes for the same day return the existing run (``created`` False); a corrected
        file makes a new run. A malformed file raises ``StatementFileInvalid`` before anything is
        written. Returns the run and whether it was created.
        """
        _check_actor(actor)
        if not FILE_NAME.match(file_name or ""):
            raise ValidationFailed("file_name must be 1-200 characters without path separators",
                                   details=[{"field": "file_name", "code": "invalid", "message": "bad file name"}])
        if file_format not in FORMATS:
            raise ValidationFailed(f"format must be one of {', '.join(FORMATS)}",
                                   details=[{"field": "format", "code": "invalid", "message": "csv or camt053"}])
        if len(content) > MAX_FILE_BYTES:
            raise ValidationFailed(f"the file is larger than {MAX_FILE_BYTES} bytes",
                                   details=[{"field": "file", "code": "too_large", "message": "file too large"}])
        today = self.tenant.business_date()
        if business_date > today:
            raise ValidationFailed(f"business date {business_date} is after today ({today})",
                                   details=[{"field": "date", "code": "future_date", "message": "not yet"}])
        digest = hashlib.sha256(content).hexdigest()
        existing = self.session.scalars(select(ReconRun).where(
            ReconRun.business_date == business_date, ReconRun.file_digest == digest).with_for_update()).one_or_none()
        if existing is not None:
            if reconcile and existing.status == "received":
                self._reconcile(existing, actor)
            return self._run_view(existing), False
        lines = parse_statement(content, file_format)  # raises before any write
        now = self.uow.clock.now()
        row = ReconRun(run_no=new_no("rec_"), business_date=business_date, file_digest=digest,
                       file_name=file_name, file_format=file_format, status="received", line_count=len(lines),
                       received_by=actor, received_at=now, reconciled_at=None, our_count=None,
                       matched_count=None, exception_count=None, summary=None)
        try:
            with self.session.begin_nested():
                self.session.add(row)
        except IntegrityError:
            raise Conflict("the same file for this day is being received concurrently; retry") from None
        self._store_lines(row.id, lines)
        self._audit(row.id, None, "received", actor, f"{file_format} {file_name}: {len(lines)} records")
        log.info("payments.recon.received", run_no=row.run_no, business_date=str(business_date),
                 file_format=file_format, records=len(lines))
        if reconcile:
            self._reconcile(row, actor)
        return self._run_view(row), True

    def reconcile_received(self, business_date: date, actor: str) -> list[ReconRunView]:
        """Reconcile every file received for ``business_date`` and not yet reconciled (the daily job).

        Raises :class:`NoStatementFile` when no file at all was received for the day, so the job's
        run fails visibly and is retried once the file arrives.
        """
        _check_actor(actor)
        rows = self.session.scalars(select(ReconRun).where(ReconRun.business_date == business_date)
                                    .order_by(ReconRun.id).with_for_update()).all()
        if not rows:
            raise NoStatementFile(f"no channel statement file was received for {business_date}")
        done = []
        for row in rows:
            if row.status == "received":
                self._reconcile(row, actor)
                done.append(self._run_view(row))
        return done

    def _reconcile(self, run: ReconRun, actor: str) -> None:
        """Match the run's lines against our payments and refunds with set-based statements (see
        module doc): a credit record against the payment it names, a debit record against the
        refund it names."""
        tenant_id = self.tenant.id
        lines, pay, exc = ReconLine.__table__, Payment.__table__, ReconException.__table__
        ref = Refund.__table__
        start, end = self._day_window(run.business_date)
        completed = func.coalesce(pay.c.completed_at, pay.c.created_at)
        ours_of_day = and_(pay.c.tenant_id == tenant_id, pay.c.tender != "cash", completed >= start, completed < end)
        refunds_of_day = and_(ref.c.tenant_id == tenant_id, ref.c.tender != "cash", ref.c.created_at >= start,
                              ref.c.created_at < end)
        run_lines = and_(lines.c.tenant_id == tenant_id, lines.c.run_id == run.id)
        credit, debit = lines.c.amount_minor >= 0, lines.c.amount_minor < 0
        joins_payment = and_(pay.c.tenant_id == tenant_id, pay.c.payment_no == lines.c.payment_ref,
                             pay.c.tender != "cash")
        settled_line = case((lines.c.status == "succeeded", lines.c.amount_minor), else_=0)
        settled_ours = case((pay.c.status == "succeeded", pay.c.amount_minor), else_=0)
        columns = ["tenant_id", "exception_no", "run_id", "kind", "payment_no", "refund_no", "line_no", "channel_ref",
                   "our_amount_minor", "our_currency", "our_status", "channel_amount_minor", "channel_currency",
                   "channel_status", "difference_minor"]
        line_no = literal(f"{run.run_no}-L", String) + cast(lines.c.line_no, String)

        def line_exceptions(ours_id: Any, amount: Any, currency: Any, status: Any, settled: Any) -> tuple[Any, ...]:
            """The kind, difference and condition of a record against its counterpart of ours."""
            kind = case(
                (lines.c.duplicate, "duplicate_in_channel"),
                (ours_id.is_(None), "missing_in_ours"),
                (lines.c.currency != currency, "currency_mismatch"),
                (lines.c.status != status, "status_mismatch"),
                (lines.c.amount_minor > amount, "amount_over"),
                else_="amount_under",
            )
            difference = case(
                (or_(lines.c.duplicate, ours_id.is_(None)), settled_line),
                (lines.c.currency != currency, null()),
                else_=settled_line - settled,
            )
            differs = or_(lines.c.duplicate, ours_id.is_(None), lines.c.currency != currency,
                          lines.c.status != status, lines.c.amount_minor != amount)
            return kind, difference, differs

        # 1. Every credit record of the file, left-joined to our non-cash payment of that number: a
        #    duplicate record, one naming no payment of ours, or a pair that differs is an exception.
        kind, difference, differs = line_exceptions(pay.c.id, pay.c.amount_minor, pay.c.currency, pay.c.status,
                                                    settled_ours)
        self.session.execute(insert(exc).from_select(columns, select(
            literal(tenant_id), line_no, literal(run.id), kind, pay.c.payment_no, null(), lines.c.line_no,
            lines.c.channel_ref, pay.c.amount_minor, pay.c.currency, pay.c.status, lines.c.amount_minor,
            lines.c.currency, lines.c.status, difference,
        ).select_from(lines.outerjoin(pay, joins_payment)).where(run_lines, credit, differs)))

        # 1b. Every debit record, left-joined to our non-cash refund of that number (and the refunded
        #     payment, for the currency). A refund is done when recorded: ours is -amount, succeeded.
        #     A debit naming no refund (a chargeback naming the payment, a fee) is missing in ours.
        joins_refund = and_(ref.c.tenant_id == tenant_id, ref.c.refund_no == lines.c.payment_ref, ref.c.tender != "cash")
        refunded = and_(pay.c.tenant_id == tenant_id, pay.c.payment_no == ref.c.payment_no)
        our_debit = -ref.c.amount_minor
        kind, difference, differs = line_exceptions(ref.c.id, our_debit, pay.c.currency, literal("succeeded"),
                                                    our_debit)
        self.session.execute(insert(exc).from_select(columns, select(
            literal(tenant_id), line_no, literal(run.id), kind, ref.c.payment_no, ref.c.refund_no, lines.c.line_no,
            lines.c.channel_ref, our_debit, pay.c.currency,
            case((ref.c.id.is_(None), null()), else_=literal("succeeded")), lines.c.amount_minor, lines.c.currency,
            lines.c.status, difference,
        ).select_from(lines.outerjoin(ref, joins_refund).outerjoin(pay, refunded)).where(run_lines, debit, differs)))

        # 2. Our payments and refunds of the day that the file does not list.
        listed = exists().where(run_lines, credit, ~lines.c.duplicate, lines.c.payment_ref == pay.c.payment_no)
        self.session.execute(insert(exc).from_select(columns, select(
            literal(tenant_id), literal(f"{run.run_no}-P", String) + pay.c.payment_no, literal(run.id),
            literal("missing_in_channel"), pay.c.payment_no, null(), null(), null(), pay.c.amount_minor,
            pay.c.currency, pay.c.status, null(), null(), null(), -settled_ours,
        ).where(ours_of_day, pay.c.status.in_(EXPECTED_STATUSES), ~listed)))
        refund_listed = exists().where(run_lines, debit, ~lines.c.duplicate, lines.c.payment_ref == ref.c.refund_no)
        self.session.execute(insert(exc).from_select(columns, select(
            literal(tenant_id), literal(f"{run.run_no}-R", String) + ref.c.refund_no, literal(run.id),
            literal("missing_in_channel"), ref.c.payment_no, ref.c.refund_no, null(), null(), -ref.c.amount_minor,
            pay.c.currency, literal("succeeded"), null(), null(), null(), ref.c.amount_minor,
        ).select_from(ref.join(pay, refunded)).where(refunds_of_day, ~refund_listed)))

        # Counts: our expected payments and the exceptions by kind; every other line is a match.
        our_count = self.session.execute(select(func.count()).select_from(pay).where(
            ours_of_day, pay.c.status.in_(EXPECTED_STATUSES))).scalar_one()
        our_count += self.session.execute(select(func.count()).select_from(ref).where(refunds_of_day)).scalar_one()
        by_kind = dict(self.session.execute(select(exc.c.kind, func.count()).where(
            exc.c.tenant_id == tenant_id, exc.c.run_id == run.id).group_by(exc.c.kind)).all())
        summary = {k: int(by_kind.get(k, 0)) for k in KINDS}
        line_exceptions = sum(count for k, count in summary.items() if k != "missing_in_channel")
        assert 0 <= line_exceptions <= run.line_count, "more line exceptions than lines"
        run.status = "reconciled"
        run.reconciled_at = self.uow.clock.now()
        run.our_count = int(our_count)
        run.matched_count = run.line_count - line_exceptions
        run.exception_count = sum(summary.values())
        run.summary = summary
        self.session.flush()
        self._audit(run.id, None, "reconciled", actor,
                    f"{run.matched_count} matched, {run.exception_count} exceptions")
        self.uow.publish("payments.recon.reconciled",
                         {"run_no": run.run_no, "business_date": run.business_date.isoformat(),
                          "matched": run.matched_count, "exceptions": run.exception_count, "summary": summary},
                         subject=f"recon:{run.run_no}")
        log.info("payments.recon.reconciled", run_no=run.run_no, matched=run.matched_count,
                 exceptions=run.exception_count)

    # --- resolution ------------------------------------------------------------------------------

    def resolve(self, exception_no: str, action: str, actor: str, note: str, *,
                later_run_no: str | None = None) -> ReconExceptionView:
        """Resolve an open exception once: ``accept`` it, ``write_off`` the difference with a ledger
        adjustment entry (clearing account against the write-off account; none when the difference
        is zero), or mark it ``fixed`` by a later file of the same day (``later_run_no``) in which it
        no longer appears. A second resolution raises :class:`AlreadyResolved`."""
        _check_actor(actor)
        if action not in ACTIONS:
            raise ValidationFailed(f"action must be one of {', '.join(ACTIONS)}",
                                   details=[{"field": "action", "code": "invalid", "message": "unknown action"}])
        note = (note or "").strip()
        if not 1 <= len(note) <= 500:
            raise ValidationFailed("a note of 1-500 characters is required to resolve an exception",
                                   details=[{"field": "note", "code": "required", "message": "say why"}])
        row = self.session.scalars(select(ReconException).where(ReconException.exception_no == exception_no)
                                   .with_for_update()).one_or_none()
        if row is None:
            raise NotFound(f"no reconciliation exception {exception_no!r}")
        if row.resolution is not None:
            raise AlreadyResolved(
                f"exception {exception_no} was already resolved ({row.resolution}) by {row.resolved_by} "
                f"at {row.resolved_at:%Y-%m-%dT%H:%M:%SZ}")
        run = self.session.get(ReconRun, row.run_id)
        assert run is not None
        entry_id = None
        if action == "write_off":
            entry_id = self._write_off(row, run, actor)
        elif action == "fixed":
            row.fixed_by_run_no = self._check_fixed(row, run, later_run_no)
        row.resolution, row.resolved_by, row.resolved_at = action, actor, self.uow.clock.now()
        row.resolution_note, row.ledger_entry_id = note, entry_id
        self.session.flush()
        self._audit(run.id, exception_no, action, actor, note, entry_id)
        self.uow.publish("payments.recon.exception_resolved",
                         {"exception_no": exception_no, "run_no": run.run_no, "kind": row.kind,
                          "resolution": action, "resolved_by": actor, "ledger_entry_id": entry_id},
                         subject=f"recon:{run.run_no}")
        return self._exception_view(row, run.run_no)

    def _write_off(self, row: ReconException, run: ReconRun, actor: str) -> str | None:
        if row.difference_minor is None:
            raise CannotWriteOff(f"exception {row.exception_no} is a currency mismatch: no amount can be written "
                                 "off; accept it or fix it with a later file")
        if row.difference_minor == 0:
            return None
        currency = row.our_currency or row.channel_currency
        assert currency is not None
        suffix = "" if currency == self.tenant.currency else f":{currency}"
        write_off = self.settings.recon_write_off_account + suffix
        clearing = self.settings.recon_clearing_account + suffix
        ledger = Ledger(self.session, self.uow.clock)
        ledger.open_account(write_off, currency, "expense", OwnerType.BANK)
        ledger.open_account(clearing, currency, "asset", OwnerType.BANK)
        amount = abs(row.difference_minor)
        # The channel settled less than we booked: the receivable from it is written down (an
        # expense); more: the surplus is recognized against the same account.
        postings = ([Posting.debit(write_off, amount, currency), Posting.credit(clearing, amount, currency)]
                    if row.difference_minor < 0 else
                    [Posting.debit(clearing, amount, currency), Posting.credit(write_off, amount, currency)])
        entry_id = f"recon:writeoff:{row.exception_no}"
        ledger.post(EntryDraft(entry_id, postings, description=f"Reconciliation write-off ({row.kind})",
                               metadata={"run_no": run.run_no, "exception_no": row.exception_no, "kind": row.kind,
                                         "payment_no": row.payment_no, "refund_no": row.refund_no,
                                         "channel_ref": row.channel_ref,
                                         "approved_by": actor}))
        return entry_id

    def _check_fixed(self, row: ReconException, run: ReconRun, later_run_no: str | None) -> str:
        if not later_run_no:
            raise ValidationFailed("later_run_no is required to mark an exception fixed by a later file",
                                   details=[{"field": "later_run_no", "code": "required", "message": "which run"}])
        later = self.session.scalars(select(ReconRun).where(ReconRun.run_no == later_run_no)).one_or_none()
        if later is None:
            raise NotFound(f"no reconciliation run {later_run_no!r}")
        if later.business_date != run.business_date or later.id <= run.id or later.status != "reconciled":
            raise NotFixed(f"run {later_run_no} is not a later reconciled file of {run.business_date}")
        if row.refund_no is not None:
            key = ReconException.refund_no == row.refund_no
        elif row.payment_no is not None:
            key = and_(ReconException.payment_no == row.payment_no, ReconException.refund_no.is_(None))
        else:
            key = and_(ReconException.payment_no.is_(None), ReconException.channel_ref == row.channel_ref)
        still = self.session.scalars(select(ReconException.exception_no).where(
            ReconException.run_id == later.id, key).limit(1)).first()
        if still is not None:
            raise NotFixed(f"run {later_run_no} still has this difference (exception {still})")
        return later.run_no

    # --- retention -------------------------------------------------------------------------------

    def purge_lines(self, business_date: date) -> list[str]:
        """Delete the parsed lines of every run reconciled for a business date more than
        ``recon_line_retention_days`` before ``business_date`` (none while the setting is 0). The
        run, its counts, exceptions and audit stay: only matching reads the lines, and a run is
        never matched again. Answers the runs purged; a run already purged is left alone."""
        days = self.settings.recon_line_retention_days
        if not days:
            return []
        cutoff = business_date - timedelta(days=days)
        runs = self.session.scalars(select(ReconRun).where(
            ReconRun.status == "reconciled", ReconRun.business_date < cutoff, ReconRun.lines_purged_at.is_(None),
        ).order_by(ReconRun.id)).all()
        now = self.uow.clock.now()
        lines = ReconLine.__table__
        for run in runs:
            # The lines table has no tenant index (its key leads with run_id): a run's id is the
            # tenant's own, found above through the tenant-filtered runs.
            self.session.execute(lines.delete().where(lines.c.run_id == run.id, lines.c.tenant_id == self.tenant.id))
            run.lines_purged_at = now
            self._audit(run.id, None, "lines_purged", "job:payments.recon_purge", f"retention {days} days", None)
        self.session.flush()
        if runs:
            log.info("reconciliation lines purged", runs=len(runs), before=cutoff.isoformat())
        return [run.run_no for run in runs]

    # --- reading ---------------------------------------------------------------------------------

    def get_run(self, run_no: str) -> ReconRunView:
        return self._run_view(self._run(run_no))

    def list_runs(self, business_date: date | None = None, *, limit: int = 50) -> list[ReconRunView]:
        query = select(ReconRun).order_by(ReconRun.id.desc()).limit(max(1, min(limit, 500)))
        if business_date is not None:
            query = query.where(ReconRun.business_date == business_date)
        return [self._run_view(row) for row in self.session.scalars(query)]

    def exceptions(self, run_no: str, *, open_only: bool = False, kind: str | None = None,
                   limit: int = 200, offset: int = 0) -> list[ReconExceptionView]:
        run = self._run(run_no)
        if kind is not None and kind not in KINDS:
            raise ValidationFailed(f"kind must be one of {', '.join(KINDS)}",
                                   details=[{"field": "kind", "code": "invalid", "message": "unknown kind"}])
        query = (select(ReconException).where(ReconException.run_id == run.id)
                 .order_by(ReconException.id).limit(max(1, min(limit, 1000))).offset(max(0, offset)))
        if open_only:
            query = query.where(ReconException.resolution.is_(None))
        if kind is not None:
            query = query.where(ReconException.kind == kind)
        return [self._exception_view(row, run.run_no) for row in self.session.scalars(query)]

    def get_exception(self, exception_no: str) -> ReconExceptionView:
        row = self.session.scalars(select(ReconException).where(
            ReconException.exception_no == exception_no)).one_or_none()
        if row is None:
            raise NotFound(f"no reconciliation exception {exception_no!r}")
        run = self.session.get(ReconRun, row.run_id)
        assert run is not None
        return self._exception_view(row, run.run_no)

    def audit(self, run_no: str) -> list[ReconAuditView]:
        run = self._run(run_no)
        rows = self.session.scalars(select(ReconAudit).where(ReconAudit.run_id == run.id).order_by(ReconAudit.id))
        return [ReconAuditView(run.run_no, r.exception_no, r.action, r.actor, r.note, r.ledger_entry_id, r.at)
                for r in rows]

    # --- internals -------------------------------------------------------------------------------

    def _store_lines(self, run_id: int, lines: Sequence[StatementLine]) -> None:
        """One bulk insert of the parsed lines, flagging a second credit for the same payment or a
        second debit for the same refund (a credit and a debit naming one number are two records:
        a payment and its chargeback)."""
        seen: set[tuple[str, bool]] = set()
        tenant_id = self.tenant.id

        def duplicate(ref: str | None, amount_minor: int) -> bool:
            if ref is None:
                return False
            key = (ref, amount_minor < 0)
            if key in seen:
                return True
            seen.add(key)
            return False

        conn = self.session.connection()
        columns = "tenant_id, run_id, line_no, channel_ref, payment_ref, amount_minor, currency, status, booked_at, duplicate"
        if conn.dialect.name == "postgresql":
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            # COPY text format built in chunks: every field was validated by the parser (references
            # match REF, currencies and statuses come from fixed sets), so none holds a tab, newline
            # or backslash that would need escaping. NULL is \N.
            prefix, null_text = f"{tenant_id}\t{run_id}\t", "\\N"
            times: dict[datetime, str] = {}

            def booked(value: datetime | None) -> str:
                if value is None:
                    return null_text
                text = times.get(value)
                if text is None:
                    text = times[value] = value.isoformat()
                return text

            with cursor.copy(f"COPY payments_recon_lines ({columns}) FROM STDIN") as copy:
                for first in range(0, len(lines), 50_000):
                    copy.write("".join(
                        f"{prefix}{line[0]}\t{line[1]}\t{line[2] or null_text}\t{line[3]}\t{line[4]}\t{line[5]}\t"
                        f"{booked(line[6])}\t{'t' if duplicate(line[2], line[3]) else 'f'}\n"
                        for line in lines[first:first + 50_000]))
            # Fresh statistics, or the planner sizes the matching joins for an empty table.
            cursor.execute("ANALYZE payments_recon_lines")
            return
        to_db = ReconLine.__table__.c.booked_at.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        assert to_db is not None
        stored: dict[datetime, Any] = {}  # a day's file repeats its booking times

        def booked(value: datetime | None) -> Any:
            if value is None:
                return None
            found = stored.get(value)
            if found is None:
                found = stored[value] = to_db(value)
            return found

        rows = ((tenant_id, run_id, line.line_no, line.channel_ref, line.payment_ref, line.amount_minor,
                 line.currency, line.status, booked(line.booked_at), duplicate(line.payment_ref, line.amount_minor))
                for line in lines)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.executemany(f"INSERT INTO payments_recon_lines ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        cursor.close()

    def _day_window(self, day: date) -> tuple[datetime, datetime]:
        zone = ZoneInfo(self.tenant.timezone)
        try:
            start = datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)
            end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone).astimezone(UTC)
        except OverflowError:  # year 1 or 9999-12-31: refused, not a 500
            raise ValidationFailed(f"business date {day.isoformat()} is out of range", details=[
                {"field": "date", "code": "out_of_range", "message": "not a business day the bank can have"}]) from None
        return start, end

    def _audit(self, run_id: int, exception_no: str | None, action: str, actor: str, note: str | None,
               entry_id: str | None = None) -> None:
        self.session.add(ReconAudit(run_id=run_id, exception_no=exception_no, action=action, actor=actor,
                                    note=note, ledger_entry_id=entry_id, at=self.uow.clock.now()))
        self.session.flush()

    def _run(self, run_no: str) -> ReconRun:
        row = self.session.scalars(select(ReconRun).where(ReconRun.run_no == run_no)).one_or_none()
        if row is None:
            raise NotFound(f"no reconciliation run {run_no!r}")
        return row

    def _run_view(self, row: ReconRun) -> ReconRunView:
        open_count = None
        if row.status == "reconciled":
            open_count = self.session.execute(select(func.count()).select_from(ReconException).where(
                ReconException.run_id == row.id, ReconException.resolution.is_(None))).scalar_one()
        return ReconRunView(row.run_no, row.business_date, row.file_name, row.file_format, row.file_digest, row.status,
                            row.line_count, row.our_count, row.matched_count, row.exception_count, open_count,
                            dict(row.summary or {}), row.received_by, row.received_at, row.reconciled_at,
                            row.lines_purged_at)

    @staticmethod
    def _exception_view(row: ReconException, run_no: str) -> ReconExceptionView:
        return ReconExceptionView(row.exception_no, run_no, row.kind, row.payment_no, row.line_no, row.channel_ref,
                                  row.our_amount_minor, row.our_currency, row.our_status, row.channel_amount_minor,
                                  row.channel_currency, row.channel_status, row.difference_minor, row.resolution,
                                  row.resolved_by, row.resolved_at, row.resolution_note, row.ledger_entry_id,
                                  row.fixed_by_run_no, row.refund_no)


def _check_actor(actor: str) -> None:
    if not isinstance(actor, str) or not ACTOR.match(actor):
        raise ValidationFailed("the user (actor) must be 1-64 letters, digits or _.@:-",
                               details=[{"field": "actor", "code": "invalid", "message": "name who does it"}])


# --- the daily job ---------------------------------------------------------------------------------


def _reconcile_partition(ctx: Any) -> dict[str, int]:
    service = ReconciliationService(ctx.uow, ctx.module("payments").settings)
    runs = service.reconcile_received(ctx.business_date, actor="job:payments.reconcile")
    return {"runs": len(runs), "matched": sum(r.matched_count or 0 for r in runs),
            "exceptions": sum(r.exception_count or 0 for r in runs)}


def _purge_partition(ctx: Any) -> dict[str, int]:
    service = ReconciliationService(ctx.uow, ctx.module("payments").settings)
    return {"runs_purged": len(service.purge_lines(ctx.business_date))}


RECON_PURGE = JobSpec(
    name="payments.recon_purge",
    partitions=lambda ctx: ["all"],
    run_partition=_purge_partition,
    description="Delete the parsed lines of statement files reconciled longer ago than recon_line_retention_days",
)


RECONCILE = JobSpec(
    name="payments.reconcile",
    # One partition: matching is a handful of set-based statements over the day's file.
    partitions=lambda ctx: ["all"],
    run_partition=_reconcile_partition,
    description="Reconcile the day's QR and payment-code payments against the channel statement files received for it",
)
