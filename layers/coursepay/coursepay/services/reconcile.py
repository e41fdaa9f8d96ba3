"""Reconciliation: payments PENDING too long are checked with PayMob, and lapsed ones expire.

A callback can be lost (PayMob documents no retries); the reconciler asks PayMob on a
schedule that is dense while a student may still be paying and sparse after, and expires a
payment whose checkout lapsed with no transaction. Every change goes through the state
machine, and is an audit entry under the payment.

After the checkout lapsed (its expiry plus a grace period) the reconciler asks at once, then
hourly, `lapsed_max_checks` times at most (a day by default), and then stops asking. Only
checks PayMob answered count: one given back during an outage is asked again on the next
run. A lapsed payment is settled by the first answer that settles it: a transaction goes
through the state machine; no transaction at all makes it EXPIRED. What the schedule caps
is the rest, which would otherwise be asked about on every run forever:

- PayMob names a transaction that is still pending (a wallet or kiosk payment not yet
  finished). The payment stays PENDING: when PayMob finishes it, its success or decline
  arrives as a callback, and the status backup asks again whenever the student looks.
- PayMob names a transaction of an order the payment does not hold ("unlinked"), typically
  because checkout never stored the order id PayMob created. The inquiry asks by our
  merchant_order_id (the payment id, sent as special_reference), which needs no order id,
  so "PayMob has no transaction for this payment" is known with or without one: an unlinked
  payment whose inquiry finds nothing expires like any other. One whose inquiry finds a
  transaction is never expired (it may be paid) and never linked by guessing: an admin links
  it.
- PayMob answers with something that is not a transaction.

When the last check leaves the payment PENDING, the reconciler logs an error, counts
`ReconcileGaveUp` and writes an audit entry saying so; later runs list the payment and
leave it alone (`given_up` in the report) until a callback, the status backup or an admin
settles it.

Audit entries: a check that changed the payment is audited every time. A check that changed
nothing (no transaction yet, a transaction still pending, unlinked, an invalid answer) is
audited at most once per payment per UTC clock hour: its entry's key names the hour, and
the conditional write of the second one in the same hour fails quietly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from coursepay.domain.facts import FactKind, FactSource, TransactionFact
from coursepay.domain.payment import Payment, PaymentStatus
from coursepay.domain.records import EventKind, PaymentEvent
from coursepay.domain.state_machine import decide
from coursepay.observability import count, logger
from coursepay.services.inquiry import (
    InquiryAnswer,
    InquiryResult,
    PaymentInquiry,
    claim_check,
    iso,
    parse_time,
    release_check,
)
from coursepay.services.ports import PaymentStore
from coursepay.storage.errors import StalePayment, StorageError
from coursepay.storage.pagination import Page

ACTOR = "reconciler"

# The check schedule, from a payment's creation: a first check once a callback is overdue
# (the pending threshold, a minute in production), every five minutes five times while the
# student may still be on PayMob's page, then hourly until the checkout expires.
FIRST_CHECK = timedelta(minutes=1)
FREQUENT_INTERVAL = timedelta(minutes=5)
FREQUENT_CHECKS = 5
LATER_INTERVAL = timedelta(hours=1)
# After the checkout lapsed: at once, then hourly, a day's worth of checks at most.
LAPSED_INTERVAL = timedelta(hours=1)
LAPSED_MAX_CHECKS = 24


def next_check_at(
    created_at: datetime, last_checked_at: datetime | None, first_check: timedelta = FIRST_CHECK
) -> datetime:
    """The first scheduled check after the last one (the very first if never checked)."""
    if last_checked_at is None or last_checked_at < created_at + first_check:
        return created_at + first_check
    last_frequent = first_check + FREQUENT_CHECKS * FREQUENT_INTERVAL
    elapsed = last_checked_at - created_at
    if elapsed < last_frequent:
        done = math.floor((elapsed - first_check) / FREQUENT_INTERVAL)
        return created_at + first_check + (done + 1) * FREQUENT_INTERVAL
    done = math.floor((elapsed - last_frequent) / LATER_INTERVAL)
    return created_at + last_frequent + (done + 1) * LATER_INTERVAL


def next_lapsed_check_at(
    lapsed_at: datetime,
    last_checked_at: datetime | None,
    interval: timedelta = LAPSED_INTERVAL,
    max_checks: int = LAPSED_MAX_CHECKS,
) -> datetime | None:
    """The next check of a payment whose checkout lapsed at `lapsed_at`; None: no more.

    The time after the lapse is cut in `interval` slots; a check answered in a slot makes the
    next one due at the start of the following slot, and one answered in the last slot
    (`max_checks` - 1) is the last. A slot without an answered check is simply not used, so
    at most `max_checks` checks are ever made after the lapse, and none after the last slot.
    """
    if last_checked_at is None or last_checked_at < lapsed_at:
        return lapsed_at
    used = math.floor((last_checked_at - lapsed_at) / interval) + 1
    if used >= max_checks:
        return None
    return lapsed_at + used * interval


class ReconcilePayments(PaymentStore, Protocol):
    def list_by_status(
        self,
        status: PaymentStatus,
        *,
        updated_before: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Payment]: ...


@dataclass(frozen=True, slots=True)
class ReconcileSettings:
    # Payments whose last change is younger than this are not even listed, and a payment's
    # first check comes this long after its creation.
    pending_threshold_seconds: int = 60
    # Used when a payment has no expires_at (created before checkout stored one).
    expiration_seconds: int = 3600
    # A student who started paying just before expiry may still finish: wait a little.
    expiry_grace_seconds: int = 300
    # Most payments asked about per run.
    batch_limit: int = 50
    page_size: int = 50
    # Stop taking payments when less than this is left of the invocation: one inquiry with
    # its retries and timeouts must still fit.
    safety_margin_seconds: int = 45
    # Consecutive PayMob outages after which the run stops: the next run is the retry.
    max_consecutive_unavailable: int = 3
    # After the lapse: one check per this interval, this many at most, then no more.
    lapsed_check_interval_seconds: int = int(LAPSED_INTERVAL.total_seconds())
    lapsed_max_checks: int = LAPSED_MAX_CHECKS


@dataclass(slots=True)
class ReconcileReport:
    listed: int = 0
    not_due: int = 0
    checked: int = 0
    applied: int = 0
    no_transaction: int = 0
    expired: int = 0
    unavailable: int = 0
    busy: int = 0  # changed under us (a callback, a poller): nothing to do this run
    unlinked: int = 0
    final_checks: int = 0  # lapsed, asked for the last time, still PENDING: left to an admin
    given_up: int = 0  # lapsed and asked the most times already: listed, not asked
    audits_skipped: int = 0  # "nothing changed" audits already written this hour
    errors: int = 0
    stopped: str | None = None  # why the run ended before the listing did
    payment_ids: list[str] = field(default_factory=list)  # the payments asked about

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ReconcileService:
    def __init__(
        self,
        payments: ReconcilePayments,
        inquiry: PaymentInquiry,
        settings: ReconcileSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._payments = payments
        self._inquiry = inquiry
        self._settings = settings
        self._clock = clock

    def run(self, remaining_millis: Callable[[], int]) -> ReconcileReport:
        """One scheduled run: bounded by the batch limit and the invocation's remaining time."""
        settings = self._settings
        report = ReconcileReport()
        started = self._clock()
        updated_before = iso(started - timedelta(seconds=settings.pending_threshold_seconds))
        cursor: str | None = None
        consecutive_unavailable = 0
        while report.stopped is None:
            page = self._payments.list_by_status(
                PaymentStatus.PENDING,
                updated_before=updated_before,
                limit=settings.page_size,
                cursor=cursor,
            )
            for payment in page.items:
                report.stopped = self._stop_reason(report, remaining_millis)
                if report.stopped is not None:
                    break
                report.listed += 1
                result = self._reconcile(payment, report)
                if result is InquiryResult.UNAVAILABLE:
                    consecutive_unavailable += 1
                    if consecutive_unavailable >= settings.max_consecutive_unavailable:
                        report.stopped = "paymob_unavailable"
                        break
                elif result is not None:
                    consecutive_unavailable = 0
            cursor = page.cursor
            if cursor is None:
                break
        count("ReconcileRun")
        count("ReconcileChecked", report.checked)
        count("ReconcileExpired", report.expired)
        # Lapsed payments past their last check, still PENDING: each needs an admin.
        count("ReconcileGivenUp", report.given_up)
        count("ReconcilePaymobUnavailable", report.unavailable)
        logger.info("reconcile run finished", **report.to_json())
        return report

    def _stop_reason(
        self, report: ReconcileReport, remaining_millis: Callable[[], int]
    ) -> str | None:
        if report.checked >= self._settings.batch_limit:
            return "batch_limit"
        if remaining_millis() < self._settings.safety_margin_seconds * 1000:
            return "time_budget"
        return None

    def _reconcile(self, payment: Payment, report: ReconcileReport) -> InquiryResult | None:
        """Check one payment if it is due; the inquiry's result, or None when not asked."""
        now = self._clock()
        created = parse_time(payment.created_at)
        last_checked = (
            None if payment.last_checked_at is None else parse_time(payment.last_checked_at)
        )
        lapsed_at = self._lapsed_at(payment)
        lapsed = now >= lapsed_at
        if lapsed:
            due = self._next_lapsed_check(lapsed_at, last_checked)
            if due is None:
                report.given_up += 1
                return None
        else:
            first_check = timedelta(seconds=self._settings.pending_threshold_seconds)
            due = next_check_at(created, last_checked, first_check)
        if due > now:
            report.not_due += 1
            return None
        try:
            return self._check(payment, now, lapsed_at if lapsed else None, report)
        except StorageError:
            report.errors += 1
            count("ReconcileError")
            logger.exception("reconcile of a payment failed", payment_id=payment.payment_id)
            return None

    def _next_lapsed_check(
        self, lapsed_at: datetime, last_checked: datetime | None
    ) -> datetime | None:
        return next_lapsed_check_at(
            lapsed_at,
            last_checked,
            timedelta(seconds=self._settings.lapsed_check_interval_seconds),
            self._settings.lapsed_max_checks,
        )

    def _check(
        self,
        payment: Payment,
        now: datetime,
        lapsed_at: datetime | None,
        report: ReconcileReport,
    ) -> InquiryResult | None:
        """Ask PayMob about one payment; `lapsed_at` is set when its checkout lapsed."""
        claimed = claim_check(self._payments, payment, iso(now))
        if claimed is None:
            report.busy += 1
            return None
        report.checked += 1
        report.payment_ids.append(payment.payment_id)
        answer = self._inquiry.ask(claimed, "Reconciler")
        if not answer.reached_paymob:
            # Nothing changes; the check is given back so the next run asks again.
            report.unavailable += 1
            release_check(self._payments, claimed, payment.last_checked_at)
            return InquiryResult.UNAVAILABLE
        if answer.result is InquiryResult.NO_TRANSACTION and lapsed_at is not None:
            self._expire(claimed, now, report)
            return answer.result
        if answer.result is InquiryResult.APPLIED:
            report.applied += 1
        elif answer.result is InquiryResult.NO_TRANSACTION:
            report.no_transaction += 1
        elif answer.result is InquiryResult.UNLINKED:
            report.unlinked += 1
        after = self._payments.get(payment.payment_id, consistent=True) or claimed
        final = (
            lapsed_at is not None
            and after.status is PaymentStatus.PENDING
            and self._next_lapsed_check(lapsed_at, now) is None
        )
        if final:
            report.final_checks += 1
            count("ReconcileGaveUp")
            logger.error(
                "lapsed payment still unsettled after its last check; an admin settles it",
                payment_id=payment.payment_id,
                inquiry=str(answer.result),
                transaction_id=answer.transaction_id,
                paymob_order_id=payment.paymob_order_id,
            )
        if not self._audit(claimed, after, now, answer, final=final):
            report.audits_skipped += 1
        return answer.result

    def _expire(self, payment: Payment, now: datetime, report: ReconcileReport) -> None:
        fact = TransactionFact(
            source=FactSource.RECONCILER,
            kind=FactKind.EXPIRED,
            paymob_order_id=payment.paymob_order_id,
            actor=ACTOR,
        )
        at = iso(now)
        for _ in range(3):
            decision = decide(payment, fact, at)
            event = self._event(
                payment,
                at,
                fact_kind=str(fact.kind),
                decision=str(decision.reason),
                status_after=str(decision.after.status),
                reason="no transaction at PayMob after the checkout expired",
                payload={"inquiry": str(InquiryResult.NO_TRANSACTION)},
            )
            try:
                self._payments.save(decision, event)
            except StalePayment as stale:
                # A callback landed between the inquiry and now: decide again on it.
                fresh = stale.current or self._payments.get(payment.payment_id, consistent=True)
                if fresh is None:
                    return
                payment = fresh
                continue
            if decision.status_changed:
                report.expired += 1
                logger.info(
                    "payment transition",
                    payment_id=payment.payment_id,
                    from_status=str(decision.before.status),
                    to_status=str(decision.after.status),
                    reason=str(decision.reason),
                    source=str(FactSource.RECONCILER),
                )
            return
        report.errors += 1
        logger.warning(
            "payment kept changing; expiry left for the next run", payment_id=payment.payment_id
        )

    def _audit(
        self,
        payment: Payment,
        after: Payment,
        now: datetime,
        answer: InquiryAnswer,
        *,
        final: bool,
    ) -> bool:
        """The check and what it did, under the payment; False when not written because it
        changed nothing and such an entry was already written this hour."""
        outcome = answer.outcome
        at = iso(now)
        unchanged = after.version == payment.version and not final
        reason = f"PayMob inquiry: {answer.result}"
        if final:
            reason += "; the last check after the checkout lapsed: an admin settles it"
        event = self._event(
            payment,
            at,
            decision=outcome.message if outcome is not None else str(answer.result).upper(),
            status_after=str(after.status),
            reason=reason,
            payload={
                "inquiry": str(answer.result),
                "transaction_id": answer.transaction_id,
                "outcome": None if outcome is None else str(outcome.result),
                **({"last_check": True} if final else {}),
            },
            paymob_transaction_id=answer.transaction_id,
        )
        if unchanged:
            # One key per payment and clock hour: the second write of the hour is refused.
            hour = iso(now.astimezone(UTC).replace(minute=0, second=0, microsecond=0))
            event = event.model_copy(update={"event_key": f"AUDIT#{hour}#RECONCILER#UNCHANGED"})
        return self._payments.record_event(event)

    def _event(
        self,
        payment: Payment,
        at: str,
        *,
        fact_kind: str | None = None,
        decision: str,
        status_after: str,
        reason: str,
        payload: dict[str, Any],
        paymob_transaction_id: str | None = None,
    ) -> PaymentEvent:
        return PaymentEvent(
            partition=payment.payment_id,
            event_key=f"AUDIT#{at}#RECONCILER",
            kind=EventKind.AUDIT,
            received_at=at,
            source=FactSource.RECONCILER,
            paymob_transaction_id=paymob_transaction_id,
            paymob_order_id=payment.paymob_order_id,
            fact_kind=fact_kind,
            decision=decision,
            status_before=str(payment.status),
            status_after=status_after,
            actor=ACTOR,
            reason=reason,
            payload=payload,
        )

    def _lapsed_at(self, payment: Payment) -> datetime:
        """When the checkout lapsed, or will: its expiry plus the grace period."""
        if payment.expires_at is not None:
            expires = parse_time(payment.expires_at)
        else:
            expires = parse_time(payment.created_at) + timedelta(
                seconds=self._settings.expiration_seconds
            )
        return expires + timedelta(seconds=self._settings.expiry_grace_seconds)
