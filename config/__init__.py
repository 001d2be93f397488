"""Configuration: the ``Settings`` model and the default status maps."""

from __future__ import annotations

from importlib import resources

_MAPS = {"shopwired": "status_map.toml", "elasticpath": "elasticpath_status_map.toml"}


def default_status_map_text(source: str = "shopwired") -> str:
    """The shipped default status map of ``source`` (``config/status_map.toml`` for
    ShopWired, ``config/elasticpath_status_map.toml`` for Elastic Path)."""
    return resources.files("config").joinpath(_MAPS[source]).read_text(encoding="utf-8")
