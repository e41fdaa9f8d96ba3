"""PayMob's callbacks: verify the signature, validate, apply through the state machine, answer.

The webhook and the retry function both call into here, so a callback is handled the same
way the first time and the fifth.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from coursepay.domain import signature
from coursepay.domain.facts import FactSource
from coursepay.domain.payment import Payment
from coursepay.domain.records import EventKind, PaymentEvent
from coursepay.domain.signature import HmacSecrets, SignatureCheck
from coursepay.domain.state_machine import Decision, decide
from coursepay.observability import count, logger, security_event
from coursepay.paymob.transactions import InvalidTransaction, Transaction, parse_transaction
from coursepay.services.abuse import BadSignatureLimiter
from coursepay.services.clock import utc_now
from coursepay.services.ports import PaymentStore, RetryQueue, SecretsSource
from coursepay.storage.errors import (
    DuplicateEvent,
    StalePayment,
    TransactionClaimedElsewhere,
    TransientStorageError,
)

MAX_CALLBACK_BYTES = 64 * 1024
RETRY_MESSAGE_KIND = "paymob-callback"
_VERIFIED = (SignatureCheck.VALID, SignatureCheck.VALID_PREVIOUS_SECRET)
_MAX_TYPE_LENGTH = 64


class CallbackResult(StrEnum):
    ACCEPTED = "accepted"  # applied: the payment changed
    RECORDED = "recorded"  # verified and stored; the state machine found nothing to change
    DUPLICATE = "duplicate"
    ORPHAN = "orphan"  # verified, for an order we do not know (yet): stored for later
    REJECTED = "rejected"  # verified, but its transaction already settles another payment
    QUEUED = "queued"  # verified; storage failed for now, so it waits on the retry queue
    TOO_LARGE = "payload_too_large"
    MALFORMED = "malformed_body"
    INVALID = "invalid_callback"
    UNAUTHORIZED = "invalid_signature"
    THROTTLED = "too_many_bad_signatures"
    UNAVAILABLE = "temporarily_unavailable"


_HTTP_STATUS = {
    CallbackResult.TOO_LARGE: 413,
    CallbackResult.MALFORMED: 400,
    CallbackResult.INVALID: 400,
    CallbackResult.UNAUTHORIZED: 401,
    CallbackResult.THROTTLED: 429,
    CallbackResult.UNAVAILABLE: 503,
}


@dataclass(frozen=True, slots=True)
class CallbackOutcome:
    result: CallbackResult
    message: str
    payment_id: str | None = None

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self.result, 200)

    @property
    def is_error(self) -> bool:
        return self.http_status >= 400


class CallbackService:
    def __init__(
        self,
        payments: PaymentStore,
        retry_queue: RetryQueue | None,
        secrets: SecretsSource,
        limiter: BadSignatureLimiter,
        *,
        clock: Callable[[], str] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        max_body_bytes: int = MAX_CALLBACK_BYTES,
        stale_attempts: int = 3,
    ) -> None:
        self._payments = payments
        self._retry_queue = retry_queue
        self._secrets = secrets
        self._limiter = limiter
        self._clock = clock
        self._monotonic = monotonic
        self._max_body_bytes = max_body_bytes
        self._stale_attempts = stale_attempts

    # --- the webhook -------------------------------------------------------------------

    def receive(self, body: bytes, received_hmac: str | None, source_ip: str) -> CallbackOutcome:
        """Handle one delivery of the transaction processed callback (or another type)."""
        if self._limiter.is_blocked(source_ip, self._monotonic()):
            return _rejected(CallbackResult.THROTTLED, "too many bad signatures from this source")
        if len(body) > self._max_body_bytes:
            return _rejected(
                CallbackResult.TOO_LARGE, f"body over {self._max_body_bytes // 1024} KiB"
            )
        parsed = _parse_envelope(body)
        if isinstance(parsed, CallbackOutcome):
            return parsed
        callback_type, obj = parsed
        if callback_type == "TRANSACTION":
            return self._receive_transaction(obj, body, received_hmac, source_ip)
        if callback_type == "TOKEN":
            return self._receive_token(obj, received_hmac, source_ip)
        return self._receive_unverifiable(callback_type, body)

    def _receive_transaction(
        self, obj: dict[str, Any], body: bytes, received_hmac: str | None, source_ip: str
    ) -> CallbackOutcome:
        try:
            txn = parse_transaction(obj)
        except InvalidTransaction as exc:
            return _rejected(CallbackResult.INVALID, f"obj.{exc.field}: {exc.problem}")
        secrets = self._load_secrets()
        if isinstance(secrets, CallbackOutcome):
            return secrets
        checked = signature.check_transaction_obj(obj, received_hmac, secrets)
        refused = self._refuse_unverified(checked, source_ip)
        if refused is not None:
            return refused
        nulls = signature.null_signed_fields(obj)
        if nulls:
            logger.info("signed fields were null", fields=list(nulls))
            count("CallbackNullSignedField")
        message = signature.transaction_message_from_obj(obj)
        try:
            return self.apply_transaction(txn, message, FactSource.CALLBACK)
        except Exception:
            # Verified, but not stored: keep it on the retry queue rather than lose it.
            logger.exception("callback not applied; queueing it", transaction_id=txn.id)
            return self._queue_for_retry(body, received_hmac, txn)

    def _load_secrets(self) -> HmacSecrets | CallbackOutcome:
        try:
            return self._secrets()
        except Exception:
            # Nothing can be verified: PayMob may deliver again, and the reconciler asks.
            logger.exception("PayMob HMAC secret unavailable")
            count("CallbackSecretUnavailable")
            return _rejected(CallbackResult.UNAVAILABLE, "cannot verify callbacks right now")

    def _refuse_unverified(self, checked: SignatureCheck, source_ip: str) -> CallbackOutcome | None:
        if checked in _VERIFIED:
            if checked is SignatureCheck.VALID_PREVIOUS_SECRET:
                count("CallbackPreviousSecretUsed")
            return None
        count("CallbackBadSignature")
        logger.warning("callback signature refused", check=str(checked), source_ip=source_ip)
        if self._limiter.record_failure(source_ip, self._monotonic()):
            security_event("bad_signature_flood", source_ip=source_ip)
        return _rejected(CallbackResult.UNAUTHORIZED, f"signature {checked}")

    def _receive_token(
        self, obj: dict[str, Any], received_hmac: str | None, source_ip: str
    ) -> CallbackOutcome:
        secrets = self._load_secrets()
        if isinstance(secrets, CallbackOutcome):
            return secrets
        checked = signature.check_token_obj(obj, received_hmac, secrets)
        refused = self._refuse_unverified(checked, source_ip)
        if refused is not None:
            return refused
        # The token itself is a reusable card credential: keep only a digest of it.
        token_digest = hashlib.sha256(str(obj.get("token", "")).encode()).hexdigest()[:16]
        event = PaymentEvent(
            partition="UNLINKED#TOKEN",
            event_key=f"TOKEN#{obj.get('id')}#{token_digest}",
            kind=EventKind.TOKEN,
            received_at=self._clock(),
            source=FactSource.CALLBACK,
            paymob_order_id=_text(obj.get("order_id")),
            payload={
                "card_subtype": _text(obj.get("card_subtype")),
                "last4": (_text(obj.get("masked_pan")) or "")[-4:],
                "token_digest": token_digest,
            },
        )
        return self._record_only(event, "TokenCallback")

    def _receive_unverifiable(self, callback_type: str, body: bytes) -> CallbackOutcome:
        # PayMob documents no signed fields for these: keep that it came, not what it says.
        digest = hashlib.sha256(body).hexdigest()
        event = PaymentEvent(
            partition=f"UNLINKED#{callback_type}",
            event_key=f"BODY#{digest[:32]}",
            kind=EventKind.OTHER,
            received_at=self._clock(),
            source=FactSource.CALLBACK,
            payload={
                "type": callback_type,
                "bytes": len(body),
                "sha256": digest,
                "verified": False,
            },
        )
        return self._record_only(event, "UnverifiableCallback")

    def _record_only(self, event: PaymentEvent, metric: str) -> CallbackOutcome:
        count(metric)
        try:
            recorded = self._payments.record_event(event)
        except Exception:
            logger.exception("callback not stored", partition=event.partition)
            return _rejected(CallbackResult.UNAVAILABLE, "could not store the callback")
        if not recorded:
            count("DuplicateCallback")
            return CallbackOutcome(CallbackResult.DUPLICATE, "already received")
        return CallbackOutcome(CallbackResult.RECORDED, "stored; no effect on payments")

    def _queue_for_retry(
        self, body: bytes, received_hmac: str | None, txn: Transaction
    ) -> CallbackOutcome:
        if self._retry_queue is None:
            return _rejected(CallbackResult.UNAVAILABLE, "could not store the callback")
        message = {
            "kind": RETRY_MESSAGE_KIND,
            "body": json.dumps({"type": "TRANSACTION", "obj": _retained(json.loads(body)["obj"])}),
            "hmac": received_hmac,
            "received_at": self._clock(),
        }
        try:
            self._retry_queue.send(message)
        except Exception:
            # PayMob may deliver again; if not, the reconciler asks PayMob about the payment.
            logger.exception("retry queue unavailable", transaction_id=txn.id)
            count("CallbackLost")
            return _rejected(CallbackResult.UNAVAILABLE, "could not store the callback")
        count("CallbackQueuedForRetry")
        return CallbackOutcome(CallbackResult.QUEUED, "accepted; will be applied shortly")

    # --- the retry function ----------------------------------------------------------------

    def reprocess(self, message: dict[str, Any]) -> CallbackOutcome:
        """Apply a queued callback; raises on a transient failure so the queue delivers again.

        The signature is checked again: the queue is ours, but a message is only as good as
        what PayMob signed.
        """
        body = str(message["body"]).encode("utf-8")
        parsed = _parse_envelope(body)
        if isinstance(parsed, CallbackOutcome):
            return parsed
        _, obj = parsed
        txn = parse_transaction(obj)
        checked = signature.check_transaction_obj(obj, message.get("hmac"), self._secrets())
        if checked not in _VERIFIED:
            security_event("queued_callback_unverified", check=str(checked))
            return _rejected(CallbackResult.UNAUTHORIZED, f"signature {checked}")
        return self.apply_transaction(
            txn, signature.transaction_message_from_obj(obj), FactSource.CALLBACK
        )

    # --- shared by callbacks, redirects and the retry path ---------------------------------------

    def apply_transaction(
        self, txn: Transaction, signed_message: str, source: FactSource
    ) -> CallbackOutcome:
        """Apply a verified transaction to the payment its signed order id names.

        One read (the payment, by the signed PayMob order id) and one write (the event and
        the payment in one transaction) on the common path.
        """
        if txn.signed_message() != signed_message:
            security_event("non_canonical_signed_fields", transaction_id=txn.id, source=source)
            return _rejected(
                CallbackResult.INVALID, "obj: signed values are not in PayMob's canonical form"
            )
        event_key = _event_key(source, txn.id, signed_message)
        payment = self._payments.find_by_paymob_order(txn.paymob_order_id)
        if payment is None:
            return self._record_orphan(txn, event_key, source)
        fact = txn.to_fact(source)
        if fact.merchant_order_id is not None and fact.merchant_order_id != payment.payment_id:
            security_event(
                "merchant_reference_mismatch",
                payment_id=payment.payment_id,
                transaction_id=txn.id,
                merchant_order_id=fact.merchant_order_id,
            )
        for _ in range(self._stale_attempts):
            decision = decide(payment, fact, self._clock())
            event = _decision_event(decision, txn, event_key, source, self._clock())
            try:
                self._payments.save(decision, event, _claim(decision))
            except DuplicateEvent:
                count("DuplicateCallback")
                return CallbackOutcome(
                    CallbackResult.DUPLICATE, "already received", payment.payment_id
                )
            except StalePayment:
                count("PaymentWriteConflict")
                fresh = self._payments.get(payment.payment_id, consistent=True)
                if fresh is None:
                    raise TransientStorageError("payment vanished during an update") from None
                payment = fresh
                continue
            except TransactionClaimedElsewhere:
                return self._reject_claimed(txn, payment, event_key, source)
            return _report(decision, txn)
        raise TransientStorageError("the payment kept changing under this callback")

    def _record_orphan(
        self, txn: Transaction, event_key: str, source: FactSource
    ) -> CallbackOutcome:
        event = PaymentEvent(
            partition=f"ORPHAN#{txn.paymob_order_id}",
            event_key=event_key,
            kind=EventKind.ORPHAN,
            received_at=self._clock(),
            source=source,
            paymob_transaction_id=str(txn.id),
            paymob_order_id=txn.paymob_order_id,
            fact_kind=str(txn.to_fact(source).kind),
            payload=txn.signed_summary(),
        )
        if not self._payments.record_event(event):
            count("DuplicateCallback")
            return CallbackOutcome(CallbackResult.DUPLICATE, "already received")
        count("OrphanCallback")
        logger.warning(
            "callback for an unknown order",
            paymob_order_id=txn.paymob_order_id,
            transaction_id=txn.id,
        )
        return CallbackOutcome(CallbackResult.ORPHAN, "stored; no payment has this order yet")

    def _reject_claimed(
        self, txn: Transaction, payment: Payment, event_key: str, source: FactSource
    ) -> CallbackOutcome:
        security_event(
            "transaction_claimed_elsewhere", payment_id=payment.payment_id, transaction_id=txn.id
        )
        self._payments.record_event(
            PaymentEvent(
                partition=payment.payment_id,
                event_key=f"REJECTED#{event_key}",
                kind=EventKind.REJECTED,
                received_at=self._clock(),
                source=source,
                paymob_transaction_id=str(txn.id),
                paymob_order_id=txn.paymob_order_id,
                reason="this transaction already settles another payment",
                payload=txn.signed_summary(),
            )
        )
        return CallbackOutcome(
            CallbackResult.REJECTED, "transaction settles another payment", payment.payment_id
        )


# --- helpers -------------------------------------------------------------------------------


def _rejected(result: CallbackResult, message: str) -> CallbackOutcome:
    count(f"CallbackRejected.{result.name.title().replace('_', '')}")
    logger.info("callback refused", result=str(result), detail=message)
    return CallbackOutcome(result, message)


def _parse_envelope(body: bytes) -> tuple[str, dict[str, Any]] | CallbackOutcome:
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return _rejected(CallbackResult.MALFORMED, "body is not UTF-8")
    except (ValueError, RecursionError):
        return _rejected(CallbackResult.MALFORMED, "body is not JSON")
    if not isinstance(payload, dict):
        return _rejected(CallbackResult.MALFORMED, "body is not a JSON object")
    callback_type = payload.get("type")
    if not isinstance(callback_type, str) or not callback_type:
        return _rejected(CallbackResult.INVALID, "type: a non-empty string is required")
    if len(callback_type) > _MAX_TYPE_LENGTH or not callback_type.replace("_", "").isalnum():
        return _rejected(CallbackResult.INVALID, "type: not a PayMob callback type")
    obj = payload.get("obj")
    if not isinstance(obj, dict):
        return _rejected(CallbackResult.INVALID, "obj: an object is required")
    return callback_type, obj


# What a queued callback keeps of `obj`: the signed fields (the retry verifies them again)
# and the unsigned detail the state machine reads. Billing data, the payment key's claims
# and the issuer's details stay out of the queue and its dead-letter queue.
_RETAINED_TOP = frozenset(path.split(".", 1)[0] for path in signature.TRANSACTION_HMAC_FIELDS) | {
    "is_void",
    "is_refund",
    "refunded_amount_cents",
    "parent_transaction",
}
_RETAINED_NESTED = {
    "order": ("id", "merchant_order_id"),
    "source_data": ("pan", "type", "sub_type"),
    "data": ("message", "txn_response_code"),
}


def _retained(obj: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key in _RETAINED_TOP | _RETAINED_NESTED.keys():
        if key not in obj:
            continue
        value = obj[key]
        nested = _RETAINED_NESTED.get(key)
        if nested is not None and isinstance(value, dict):
            value = {name: value[name] for name in nested if name in value}
        kept[key] = value
    return kept


def _event_key(source: FactSource, transaction_id: int, signed_message: str) -> str:
    # The transaction and its signed state: the same callback twice is the same key, while
    # the parent's later refunded or voided callback (same id, new state) is a new one.
    state = hashlib.sha256(signed_message.encode("utf-8")).hexdigest()[:16]
    prefix = {FactSource.REDIRECT: "RD", FactSource.INQUIRY: "IQ"}.get(source, "CB")
    return f"{prefix}#{transaction_id}#{state}"


def _claim(decision: Decision) -> str | None:
    """The PayMob transaction this decision makes the payment's own, if any."""
    after, before = decision.after, decision.before
    if decision.changed and after.paymob_transaction_id != before.paymob_transaction_id:
        return after.paymob_transaction_id
    return None


def _decision_event(
    decision: Decision, txn: Transaction, event_key: str, source: FactSource, now: str
) -> PaymentEvent:
    kind = EventKind.REDIRECT if source is FactSource.REDIRECT else EventKind.CALLBACK
    return PaymentEvent(
        partition=decision.before.payment_id,
        event_key=event_key,
        kind=kind,
        received_at=now,
        source=source,
        paymob_transaction_id=str(txn.id),
        paymob_order_id=txn.paymob_order_id,
        fact_kind=str(txn.to_fact(source).kind),
        decision=str(decision.reason),
        status_before=str(decision.before.status),
        status_after=str(decision.after.status),
        payload=txn.signed_summary(),
    )


def _report(decision: Decision, txn: Transaction) -> CallbackOutcome:
    payment_id = decision.after.payment_id
    if decision.alerts:
        logger.error(
            "payment flagged",
            payment_id=payment_id,
            transaction_id=txn.id,
            flags=sorted(decision.alerts),
            status=str(decision.after.status),
        )
        count("PaymentFlagged")
    if not decision.changed:
        count("CallbackNoChange")
        logger.info(
            "callback recorded without change",
            payment_id=payment_id,
            transaction_id=txn.id,
            reason=str(decision.reason),
        )
        return CallbackOutcome(CallbackResult.RECORDED, str(decision.reason), payment_id)
    count("CallbackApplied")
    if decision.status_changed:
        count(f"PaymentStatus.{decision.after.status}")
    logger.info(
        "payment transition",
        payment_id=payment_id,
        transaction_id=txn.id,
        from_status=str(decision.before.status),
        to_status=str(decision.after.status),
        reason=str(decision.reason),
    )
    return CallbackOutcome(CallbackResult.ACCEPTED, str(decision.reason), payment_id)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
