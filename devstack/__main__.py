"""`make dev`: run the whole system locally until Ctrl-C or SIGTERM.

Prints one line containing `ready` with the URLs once the AWS emulator, the gateway, the
PayMob simulator and every event pump answer. Settings come from the environment (see
devstack.stack.Settings): PAYMOB_HMAC_SECRET, PAYMOB_HMAC_SECRET_PREVIOUS,
PAYMOB_INTEGRATION_ID, DEV_API_PORT (3000), DEV_PAYMOB_PORT (8090), DEV_AWS_PORT (4566),
DEV_SCHEDULE_SECONDS (30), AWS_DEFAULT_REGION (eu-west-1).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from devstack.stack import LocalStack


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # boto3 announces every endpoint it finds, and provisioning every resource it skips.
    for noisy in ("botocore", "devstack.provision"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Installed before starting, so a Ctrl-C during start-up also stops cleanly.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        stack = LocalStack()
    except ValueError as invalid:
        print(f"devstack: {invalid}", file=sys.stderr)
        return 2
    try:
        stack.start()
        stack.wait_ready()
    except OSError as error:
        stack.stop()
        print(f"devstack: cannot start: {error}", file=sys.stderr)
        return 1
    except BaseException:
        stack.stop()
        raise
    try:
        for name, reason in stack.skipped_functions.items():
            print(f"devstack: {name} is not served ({reason})", flush=True)
        print(
            f"devstack ready: api={stack.api_url} demo={stack.demo_url} "
            f"paymob={stack.paymob_url} aws={stack.aws_url} "
            f"(tokens: make token SUB=<id> [ROLE=admin]; Ctrl-C stops)",
            flush=True,
        )
        stop.wait()
    finally:
        print("devstack: stopping", flush=True)
        stack.stop()
    print("devstack: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
