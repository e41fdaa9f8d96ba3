"""Payment status, the browser's result page, the student's enrolments and the health check."""

from __future__ import annotations

from typing import Any

from coursepay.api import enrollments, payments, results
from coursepay.api.app import create_resolver
from coursepay.observability import logger, metrics

app = create_resolver()
app.include_router(payments.router)
app.include_router(results.router)
app.include_router(enrollments.router)


@app.get("/api/health")
def health() -> dict[str, str]:
    # Liveness only: a dependency check here would let anyone make us call DynamoDB or PayMob.
    return {"status": "ok"}


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
