"""Golden files: 30 realistic orders per source and the reviewed UpdateOrder and event bodies
WiredPlus receives for them, checked through the real ``ordersync map --events`` command with
the default settings.

A failure here means what WiredPlus receives has changed. If the change is intended, rebuild
with ``PYTHONPATH=. .venv/bin/python tests/golden/make_cases.py --expected``, review the diff
of ``tests/golden/*/*.expected.json`` field by field, and commit it with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SOURCES = ("shopwired", "elasticpath")


def _inputs(source: str) -> list[Path]:
    return sorted(p for p in (HERE / source).glob("*.json")
                  if not p.name.endswith(".expected.json"))


def _ordersync_map(source: str, orders: list[Any]) -> list[Any]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ORDERSYNC_", "WIREDPLUS_", "SHOPWIRED_", "ELASTICPATH_"))}
    env["ORDERSYNC_SOURCE"] = source
    exe = Path(sys.executable).with_name("ordersync")
    proc = subprocess.run([str(exe), "map", "--events", "-"], input=json.dumps(orders),
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: list[Any] = json.loads(proc.stdout)
    return result


@pytest.mark.parametrize("source", SOURCES)
def test_thirty_orders_per_source(source: str) -> None:
    assert len(_inputs(source)) == 30


@pytest.mark.parametrize("source", SOURCES)
def test_ordersync_map_sends_the_reviewed_bodies(source: str) -> None:
    paths = _inputs(source)
    outputs = _ordersync_map(source, [json.loads(p.read_text("utf-8")) for p in paths])
    problems: list[str] = []
    for path, got in zip(paths, outputs, strict=True):
        want = json.loads(path.with_suffix(".expected.json").read_text("utf-8"))
        if got == want:
            continue
        g, w = got.get("update_order", got), want.get("update_order", want)
        fields = sorted(k for k in set(g) | set(w) if g.get(k) != w.get(k))
        if got.get("events") != want.get("events"):
            fields.append("events")
        problems.append(f"{path.name}: {', '.join(fields)}")
    assert not problems, "WiredPlus bodies changed:\n" + "\n".join(problems)


@pytest.mark.parametrize("source", SOURCES)
def test_golden_bodies_are_free_of_nulls_in_lines(source: str) -> None:
    for path in _inputs(source):
        body = json.loads(path.with_suffix(".expected.json").read_text("utf-8"))
        for line in body["update_order"]["order_lines"]:
            assert None not in line.values(), path.name
