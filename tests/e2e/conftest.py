"""One local stack for the whole end-to-end session, shared by every test in it.

The stack is the one `make dev` runs (template.yaml, the real handlers, the PayMob
simulator), on free ports, with two local choices: schedules run only when a test triggers
them, and reconciliation considers a payment stuck after one second instead of ten
minutes, so a dropped callback can be recovered within a test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import LocalStack
from tests.support.shop import PENDING_THRESHOLD_SECONDS, Shop

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in item.nodeid:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(
        ports={"api": 0, "paymob": 0, "aws": 0},
        env={"DEV_SCHEDULE_SECONDS": "0"},
        function_env={"PENDING_THRESHOLD_SECONDS": str(PENDING_THRESHOLD_SECONDS)},
        state_dir=tmp_path_factory.mktemp("devstack-state"),
    ) as running:
        yield running


@pytest.fixture(autouse=True)
def _normal_callbacks(stack: LocalStack) -> Iterator[None]:
    """Each test starts (and leaves) PayMob delivering callbacks normally."""
    assert stack.simulator is not None
    stack.simulator.switchboard.reset()
    yield
    stack.simulator.switchboard.reset()


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.fixture
def shop(stack: LocalStack) -> Shop:
    return Shop(stack)
