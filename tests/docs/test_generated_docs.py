"""The configuration reference and .env.example always match the Settings model."""

from __future__ import annotations

import re
from pathlib import Path

from config.settings import env_names
from sync.docsgen import render_configuration_md, render_env_example

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_up_to_date() -> None:
    current = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert current == render_configuration_md(), "run `ordersync config-docs`"


def test_env_example_is_up_to_date_and_lists_every_setting() -> None:
    current = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert current == render_env_example(), "run `ordersync config-docs`"
    names = {line.removeprefix("# ").split("=", 1)[0] for line in current.splitlines()
             if re.match(r"^(# )?[A-Z][A-Z0-9_]*=", line)}
    assert names == set(env_names())


def test_env_example_contains_no_secret_values() -> None:
    for line in render_env_example().splitlines():
        if line.startswith(("SHOPWIRED_API_SECRET", "WIREDPLUS_API_KEY", "SHOPWIRED_API_KEY")):
            assert line.endswith("=")


def test_readme_quick_start_is_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    assert [ln for ln in block.strip().splitlines()] == ["make demo", "make test"]
