"""Benchmark sections and their place in docs/benchmarks.md."""

from __future__ import annotations

import platform
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Each section is rewritten by the benchmark that produced it, with the command that
reproduces it. Numbers are what that run saw on the machine named in the section; compare
rows within a section (ours against the baseline measured in the same run), not across
machines.
"""


@dataclass
class Section:
    key: str
    title: str
    command: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        lines = ["| " + " | ".join(self.headers) + " |"]
        lines.append("|" + "|".join(" --- " for _ in self.headers) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)

    def markdown(self) -> str:
        machine = f"{platform.machine()}, Python {platform.python_version()}"
        body = [
            f"<!-- bench:{self.key} -->",
            f"## {self.title}",
            "",
            f"Reproduce: `{self.command}` ({machine}).",
            "",
            self.table(),
        ]
        if self.notes:
            body += [""] + [f"- {note}" for note in self.notes]
        body.append(f"<!-- /bench:{self.key} -->")
        return "\n".join(body)


def write_section(section: Section, doc: Path = DOC) -> None:
    text = doc.read_text() if doc.exists() else HEADER
    block = section.markdown()
    pattern = re.compile(
        rf"<!-- bench:{re.escape(section.key)} -->.*?<!-- /bench:{re.escape(section.key)} -->",
        re.DOTALL,
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text if text.endswith("\n") else text + "\n")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q) - 1]
