"""Run the PayMob simulator alone: `python -m devstack.paymob_sim --port 8090`, until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType

from devstack.paymob_sim.config import ConfigError, SimulatorConfig
from devstack.paymob_sim.simulator import PaymobSimulator

DEFAULT_PORT = 8090


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.paymob_sim",
        description="PayMob simulator. Settings come from PAYMOB_SIM_* variables "
        "(PAYMOB_SIM_HMAC_SECRET, PAYMOB_SIM_CALLBACK_MODE, ...; see SimulatorConfig).",
    )
    parser.add_argument("--host", default=os.environ.get("PAYMOB_SIM_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PAYMOB_SIM_PORT", DEFAULT_PORT)),
        help="0 picks a free port (printed at start)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    try:
        config = SimulatorConfig.from_env()
    except ConfigError as error:
        print(f"invalid PAYMOB_SIM_* settings: {error}", file=sys.stderr)
        return 2
    simulator = PaymobSimulator(config, log_requests=not args.quiet)
    try:
        port = simulator.start(args.host, args.port)
    except OSError as error:
        print(f"cannot listen on {args.host}:{args.port}: {error.strerror}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    print(
        f"PayMob simulator on {simulator.url} (port {port}); public key {config.public_key}, "
        f"card integration {config.card_integration_id}, wallet integration "
        f"{config.wallet_integration_id}; callbacks {config.callback_mode}",
        flush=True,
    )
    stop.wait()
    simulator.stop()
    print("PayMob simulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
