"""The device check's findings and report: what one section found (facts, checks, tables, notes), saved after
every finding, and the Markdown + JSON report the sections are appended to as each ends.

A section writes its `Findings` to a JSON file after every change, so a section stopped at its time limit still
hands over what it found. The `Report` appends each finished section to `report.md` and rewrites `report.json`,
so a check stopped at any point still leaves the sections done.
"""

from __future__ import annotations

import contextlib
import json
import math
import traceback
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..core.atomic import atomic_write_text

TRACEBACK_LINES = 25  # the tail of a traceback or of a section's log kept in the report


def tail(text: str, lines: int = TRACEBACK_LINES) -> str:
    """The last `lines` lines of `text`."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def write_json_atomic(data: Any, path: Path) -> None:
    """Write JSON so that a kill leaves the old file or the new one (never half of one)."""
    atomic_write_text(json.dumps(data, indent=2, default=str) + "\n", path)


def _plain(value: Any) -> Any:
    """`value` made JSON-safe: non-finite floats as strings, other objects as their text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class Findings:
    """What one section found, saved to `path` (JSON) after every change."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.data: dict[str, Any] = {"facts": {}, "checks": [], "tables": {}, "notes": [], "error": None}

    def _save(self) -> None:
        if self.path is not None:
            write_json_atomic(self.data, self.path)

    def fact(self, name: str, value: Any) -> None:
        self.data["facts"][name] = _plain(value)
        self._save()

    def check(self, what: str, ok: bool, detail: Any = "") -> bool:
        """Record one pass/fail check; returns `ok`."""
        self.data["checks"].append({"check": what, "ok": bool(ok), "detail": _plain(detail)})
        self._save()
        print(f"{'ok  ' if ok else 'FAIL'} {what}{': ' + str(detail) if detail != '' else ''}", flush=True)
        return bool(ok)

    def row(self, table: str, **values: Any) -> None:
        self.data["tables"].setdefault(table, []).append(_plain(values))
        self._save()

    def note(self, text: str) -> None:
        self.data["notes"].append(text)
        self._save()

    def error(self, text: str) -> None:
        self.data["error"] = text
        self._save()

    @contextlib.contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Run a part of a section: an exception becomes a failed check with its traceback's tail, and the
        section goes on with its next part."""
        try:
            yield
        except Exception as exc:
            self.check(what, False, f"{exc.__class__.__name__}: {str(exc)[:300]}")
            self.note(f"{what} raised:\n{tail(traceback.format_exc())}")

    @classmethod
    def load(cls, path: Path) -> dict[str, Any] | None:
        """A section's saved findings, or None when it saved none (or a kill left nothing readable)."""
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None


def status_of(findings: dict[str, Any] | None, outcome: str) -> str:
    """A section's status: its process's outcome (timeout, crashed, skipped), else failed checks or an error."""
    if outcome != "finished":
        return outcome
    if findings is None or findings.get("error"):
        return "error"
    if any(not c["ok"] for c in findings["checks"]):
        return "problems"
    return "ok"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows of dicts as a Markdown table (columns in order of first appearance)."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]

    def cell(value: Any) -> str:
        if isinstance(value, float):
            value = f"{value:.4g}"
        return str("" if value is None else value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


class Report:
    """`report.md` (appended section by section) and `report.json` (rewritten after each section) in `out`."""

    def __init__(self, out: Path, header: dict[str, Any]) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.md, self.json = out / "report.md", out / "report.json"
        self.data: dict[str, Any] = {"started": now(), "header": _plain(header), "sections": [], "finished": None}
        lines = ["# Device check of node-transfer", ""] + [f"- {k}: {v}" for k, v in header.items()] + [""]
        atomic_write_text("\n".join(lines) + "\n", self.md)
        write_json_atomic(self.data, self.json)

    def add(self, name: str, title: str, status: str, seconds: float, findings: dict[str, Any] | None,
            log_tail: str = "") -> dict[str, Any]:
        entry = {"name": name, "title": title, "status": status, "seconds": round(seconds, 1),
                 **(findings or {"facts": {}, "checks": [], "tables": {}, "notes": [], "error": None})}
        if status not in ("ok", "skipped") and log_tail:
            entry["log_tail"] = log_tail
        self.data["sections"].append(entry)
        write_json_atomic(self.data, self.json)
        with self.md.open("a") as md:
            md.write(render_section(entry) + "\n")
        return entry

    def finish(self) -> str:
        """Close the report with a summary table; returns the summary's text."""
        self.data["finished"] = now()
        write_json_atomic(self.data, self.json)
        rows = [{"section": s["name"], "status": s["status"], "seconds": s["seconds"],
                 "checks passed": f"{sum(c['ok'] for c in s['checks'])}/{len(s['checks'])}"}
                for s in self.data["sections"]]
        summary = "## Summary\n\n" + markdown_table(rows) + "\n"
        with self.md.open("a") as md:
            md.write(summary)
        return summary


def render_section(entry: dict[str, Any]) -> str:
    """One section of report.md."""
    parts = [f"## {entry['name']}: {entry['title']}", "", f"**{entry['status']}** in {entry['seconds']} s", ""]
    parts += [f"- {k}: {v}" for k, v in entry["facts"].items()]
    if entry["checks"]:
        parts += ["", markdown_table([{"check": c["check"], "ok": "yes" if c["ok"] else "**NO**",
                                       "detail": c["detail"]} for c in entry["checks"]])]
    for name, rows in entry["tables"].items():
        parts += ["", f"{name}:", "", markdown_table(rows)]
    for note in entry["notes"]:
        parts += ["", "```text" if "\n" in note else "", note, "```" if "\n" in note else ""]
    for key in ("error", "log_tail"):
        if entry.get(key):
            parts += ["", f"{key.replace('_', ' ')}:", "```text", entry[key], "```"]
    return "\n".join(parts) + "\n"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
