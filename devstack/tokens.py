"""Print a dev JWT the local gateway accepts: `python -m devstack.tokens --sub X --role admin`.

The token alone goes to stdout, so `TOKEN=$(make token SUB=alice)` works; it is signed with
the key pair under .devstack/ that `make dev` verifies against.
"""

from __future__ import annotations

import argparse
import sys

from devstack.auth import DEFAULT_TTL_SECONDS, ROLES, issue_token, load_or_create_key_pair


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.tokens", description="Print a JWT for the local stack."
    )
    parser.add_argument("--sub", required=True, help="the user id (the token's sub claim)")
    parser.add_argument("--role", choices=ROLES, default="student")
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL_SECONDS, help="lifetime in seconds")
    args = parser.parse_args(argv)
    if not args.sub.strip():
        parser.error("--sub must not be empty")
    if args.ttl <= 0:
        parser.error("--ttl must be positive")
    token = issue_token(load_or_create_key_pair(), args.sub, role=args.role, ttl_seconds=args.ttl)
    sys.stdout.write(token + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
