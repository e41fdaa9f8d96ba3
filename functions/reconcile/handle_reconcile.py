"""Scheduled reconciliation of payments stuck in PENDING (an EventBridge schedule)."""

from __future__ import annotations

from typing import Any

from coursepay.observability import logger, metrics
from coursepay.wiring import reconcile_service


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # The schedule's event carries nothing the run needs; its time budget is the invocation's.
    report = reconcile_service().run(context.get_remaining_time_in_millis)
    return report.to_json()
