"""`python -m devstack` (what `make dev` runs) and `python -m devstack.tokens` as processes.

The stack runs as a child process on free ports with its own key directory, exactly as a
developer starts it; the tests read its stdout with a deadline and stop it with a signal.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import requests

from devstack.auth import AUDIENCE, ISSUER, load_or_create_key_pair

REPO = Path(__file__).resolve().parents[2]
READY_WITHIN_SECONDS = 20.0
STOPPED_WITHIN_SECONDS = 15.0


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    lines: queue.Queue[str | None]
    output: list[str]
    urls: dict[str, str]
    seconds_to_ready: float

    def rest_of_output(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
        return self.output


def _child_env(state_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "DEV_", "PAYMOB_"))
    }
    env.update(
        {
            "DEV_API_PORT": "0",
            "DEV_PAYMOB_PORT": "0",
            "DEV_AWS_PORT": "0",
            "DEVSTACK_STATE_DIR": str(state_dir),
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


def start(state_dir: Path, **extra: str) -> RunningStack:
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack"],
        cwd=REPO,
        env=_child_env(state_dir, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    started = time.monotonic()
    deadline = started + READY_WITHIN_SECONDS
    while True:
        remaining = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(remaining, 0.01))
        except queue.Empty:
            line = None
        if line is not None and "ready" in line:
            urls = dict(re.findall(r"(\w+)=(http://\S+)", line))
            return RunningStack(process, lines, output, urls, time.monotonic() - started)
        if line is None and (remaining <= 0 or process.poll() is not None):
            process.kill()
            process.wait(5)
            pytest.fail(
                f"no ready line within {READY_WITHIN_SECONDS:.0f} s:\n" + "".join(output[-40:])
            )


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningStack]:
    stack = start(tmp_path / "state")
    try:
        yield stack
    finally:
        if stack.process.poll() is None:
            stack.process.kill()
            stack.process.wait(5)


def test_make_dev_prints_ready_with_urls_that_all_answer(running: RunningStack) -> None:
    urls = running.urls

    assert set(urls) == {"api", "demo", "paymob", "aws"}
    assert all(url.startswith("http://127.0.0.1:") for url in urls.values())
    assert running.seconds_to_ready < READY_WITHIN_SECONDS
    health = requests.get(f"{urls['api']}/_dev/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    demo = requests.get(urls["demo"], timeout=5)
    assert demo.status_code == 200
    assert 'id="checkout-button"' in demo.text
    assert requests.get(f"{urls['paymob']}/_sim/config", timeout=5).status_code == 200
    assert requests.get(f"{urls['aws']}/moto-api/config", timeout=5).ok


def test_a_token_from_make_token_is_accepted_by_the_running_gateway(
    running: RunningStack, tmp_path: Path
) -> None:
    # Given a token printed by the tokens command, signed with the stack's key directory
    printed = subprocess.run(
        [sys.executable, "-m", "devstack.tokens", "--sub", "student-cli"],
        cwd=REPO,
        env=_child_env(tmp_path / "state"),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    route = f"{running.urls['api']}/api/me/enrollments"

    # When it calls a JWT route, and again without it
    with_token = requests.get(
        route, headers={"Authorization": f"Bearer {printed.strip()}"}, timeout=10
    )
    without = requests.get(route, timeout=5)

    # Then the authorizer lets it through to the handler, and refuses the call without it
    assert without.status_code == 401
    assert without.json() == {"message": "Unauthorized"}
    assert with_token.status_code == 200, with_token.text


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_everything_and_exits_zero(
    running: RunningStack, stop_signal: signal.Signals
) -> None:
    api = running.urls["api"]

    running.process.send_signal(stop_signal)
    code = running.process.wait(STOPPED_WITHIN_SECONDS)

    assert code == 0
    output = "".join(running.rest_of_output(timeout=2))
    assert "devstack: stopped" in output
    assert "Traceback" not in output
    for url in (api, running.urls["paymob"], running.urls["aws"]):
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)


def test_a_taken_port_fails_the_start_with_a_clear_message(tmp_path: Path) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        result = subprocess.run(
            [sys.executable, "-m", "devstack"],
            cwd=REPO,
            env=_child_env(tmp_path / "state", DEV_API_PORT=port),
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 1
    assert "cannot start" in result.stderr
    assert "ready" not in result.stdout


def test_the_tokens_command_prints_a_signed_token_alone(tmp_path: Path) -> None:
    state = tmp_path / "state"

    def token_for(*arguments: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "devstack.tokens", *arguments],
            cwd=REPO,
            env=_child_env(state),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert result.stdout.count("\n") == 1
        return result.stdout.strip()

    student = token_for("--sub", "alice")
    admin = token_for("--sub", "root-admin", "--role", "admin")

    keys = load_or_create_key_pair(state)
    claims = jwt.decode(
        student, keys.public_key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER
    )
    assert claims["sub"] == "alice"
    assert "groups" not in claims
    for name in ("email", "given_name", "family_name", "phone_number"):
        assert claims[name]
    admin_claims = jwt.decode(
        admin, keys.public_key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER
    )
    assert admin_claims["groups"] == ["admin"]
    assert jwt.get_unverified_header(admin)["kid"] == keys.kid
    # the key pair persists: a second command signs with the same key
    assert load_or_create_key_pair(state).kid == keys.kid
    assert (state / "jwt-signing-key.pem").stat().st_mode & 0o077 == 0


def test_the_tokens_command_refuses_an_unknown_role(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devstack.tokens", "--sub", "x", "--role", "owner"],
        cwd=REPO,
        env=_child_env(tmp_path / "state"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
