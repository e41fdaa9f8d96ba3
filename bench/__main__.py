"""Run every benchmark, print its table, and rewrite its section of docs/benchmarks.md."""

from __future__ import annotations

import importlib
import sys

from bench.report import write_section

BENCHMARKS = ["bench.cold_imports", "bench.webhook_latency", "bench.local_stack"]


def main(names: list[str]) -> None:
    for name in names or BENCHMARKS:
        section = importlib.import_module(name).run()
        print(f"\n## {section.title}\n")
        print(section.table())
        write_section(section)


if __name__ == "__main__":
    main([f"bench.{arg}" if not arg.startswith("bench.") else arg for arg in sys.argv[1:]])
