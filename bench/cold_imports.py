"""Cold import time of each handler module against `import boto3` alone, in fresh interpreters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.report import Section, ms, write_section

ROOT = Path(__file__).resolve().parent.parent
RUNS = 7
_PROBE = (
    "import time, importlib, sys\n"
    "t = time.perf_counter()\n"
    "importlib.import_module(sys.argv[1])\n"
    "print(time.perf_counter() - t)\n"
)
# Enough environment for module import; handlers build their clients lazily.
_ENV = {
    "AWS_DEFAULT_REGION": "eu-west-1",
    "POWERTOOLS_SERVICE_NAME": "course-payments",
    "POWERTOOLS_METRICS_NAMESPACE": "CoursePayments",
}


def handler_modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted((ROOT / "functions").glob("*/handle_*.py")):
        found.append((path.stem, path.parent))
    return found


def _time_import(module: str, extra_path: Path | None) -> float:
    env = {**os.environ, **_ENV}
    paths = [str(ROOT / "layers" / "coursepay")]
    if extra_path is not None:
        paths.insert(0, str(extra_path))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.pop("AWS_ENDPOINT_URL", None)
    samples = []
    for _ in range(RUNS):
        out = subprocess.run(
            [sys.executable, "-c", _PROBE, module],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        samples.append(float(out.stdout.strip()))
    return min(samples)


def run() -> Section:
    baseline = _time_import("boto3", None)
    rows = [["`import boto3` (baseline)", ms(baseline), "1.00"]]
    for module, folder in handler_modules():
        took = _time_import(module, folder)
        rows.append([f"`{module}`", ms(took), f"{took / baseline:.2f}"])
    return Section(
        key="cold-imports",
        title="Cold import of each handler",
        command="make bench (bench/cold_imports.py)",
        headers=["module", f"best of {RUNS} (ms)", "ratio to boto3"],
        rows=rows,
        notes=[
            "Each figure is the import alone in a fresh interpreter (interpreter start "
            "excluded), the best of the runs; handlers create their AWS clients on first use.",
        ],
    )


if __name__ == "__main__":
    section = run()
    print(section.table())
    write_section(section)
