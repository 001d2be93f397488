"""One ``## `` section of ``BENCHMARKS.md`` that each run replaces, with a history table.

The project rule: measurement files show the latest run and a short history table, not every
run appended. ``bench.run`` (throughput) and ``bench.realistic`` both keep their section this
way: the run rewrites its section in place and adds its row on top of the rows the previous
version of the section had under ``### History``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

HISTORY = "### History"


def _history_rows(section: str) -> list[str]:
    """The data rows (one per run, each starting with its date) under ``### History``."""
    hist = section.find(HISTORY)
    if hist < 0:
        return []
    return [ln for ln in section[hist:].splitlines()
            if ln.startswith("| 2") and ln.count("|") > 5]


def update_section(path: Path, heading: str, build: Callable[[list[str]], str], *,
                   new_file: str = "# ordersync benchmarks\n", at_top: bool = True) -> None:
    """Replace the section of ``path`` whose heading line starts with ``heading`` (up to the
    next ``## `` heading) with ``build(old_history_rows)``, in place. When the file has no such
    section, the new one goes before the file's first ``## `` section (``at_top``) or at the
    end; a missing or empty file starts as ``new_file``. ``build`` returns the whole section,
    heading included, ending with a newline."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if not text.strip():
        text = new_file
    start = 0 if text.startswith(heading) else text.find("\n" + heading)
    if start > 0:
        start += 1
    if start >= 0:
        end = text.find("\n## ", start + len(heading))
        end = len(text) if end < 0 else end + 1
        old_rows = _history_rows(text[start:end])
        before, after = text[:start], text[end:]
    else:
        old_rows = []
        first = text.find("\n## ") if at_top else -1
        cut = len(text) if first < 0 else first + 1
        before, after = text[:cut], text[cut:]
        if not before.endswith("\n\n"):
            before = before.rstrip("\n") + "\n\n"
    section = build(old_rows)
    if after and not section.endswith("\n\n"):
        section = section.rstrip("\n") + "\n\n"
    path.write_text(before + section + after, encoding="utf-8")
