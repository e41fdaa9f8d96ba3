"""Every failure an API function can meet leaves in the one error shape, with its status."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from coursepay.api.app import create_resolver
from coursepay.errors import Conflict, NotFound
from coursepay.storage.errors import TransientStorageError
from tests.support.events import http_event, json_body, lambda_context


class Body(BaseModel):
    amount_cents: int


def failing_app(error: Exception):
    app = create_resolver()

    @app.get("/boom")
    def boom():
        raise error

    @app.post("/parse")
    def parse():
        Body.model_validate(app.current_event.json_body)
        return {}

    return app


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (NotFound("no such payment"), 404, "not_found"),
        (Conflict("already enrolled", code="already_enrolled"), 409, "already_enrolled"),
        (TransientStorageError("throttled"), 503, "temporarily_unavailable"),
        (RuntimeError("a bug"), 500, "internal_error"),
    ],
)
def test_errors_map_to_their_status_and_the_one_shape(error, status, code):
    app = failing_app(error)

    response = app.resolve(http_event("GET", "/boom"), lambda_context())

    assert response["statusCode"] == status
    assert json_body(response)["error"]["code"] == code
    assert "Traceback" not in response["body"]
    assert "a bug" not in response["body"]


def test_invalid_input_names_the_field():
    app = failing_app(RuntimeError())

    response = app.resolve(
        http_event("POST", "/parse", body={"amount_cents": "x"}), lambda_context()
    )

    assert response["statusCode"] == 400
    assert json_body(response)["error"]["message"].startswith("amount_cents")


def test_an_unknown_route_is_a_json_404():
    response = failing_app(RuntimeError()).resolve(http_event("GET", "/nope"), lambda_context())

    assert response["statusCode"] == 404
    assert json_body(response)["error"]["code"] == "not_found"
