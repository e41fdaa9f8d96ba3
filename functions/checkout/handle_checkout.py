"""The course catalogue and checkout: GET /api/courses, POST /api/courses/{courseId}/checkout."""

from __future__ import annotations

from typing import Any

from coursepay.api import catalog
from coursepay.api.app import create_resolver
from coursepay.observability import logger, metrics

app = create_resolver()
app.include_router(catalog.router)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
