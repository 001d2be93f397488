"""Configuration: the ``Settings`` model and the default status map file."""

from __future__ import annotations

from importlib import resources


def default_status_map_text() -> str:
    """The shipped default status map (``config/status_map.toml``)."""
    return resources.files("config").joinpath("status_map.toml").read_text(encoding="utf-8")
