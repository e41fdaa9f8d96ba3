"""Integration tests run against an in-process moto holding the stack from template.yaml."""

from __future__ import annotations

import pytest

from tests.support.aws import (
    aws,
    aws_environment,
    courses,
    enrollments,
    lambda_environment,
    payments,
    store,
)

__all__ = [
    "aws",
    "aws_environment",
    "courses",
    "enrollments",
    "lambda_environment",
    "payments",
    "store",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in item.nodeid:
            item.add_marker(pytest.mark.integration)
