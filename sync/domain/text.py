"""Make untrusted text safe once, at the boundary (pure, no I/O).

Everything that enters ordersync from outside — a ShopWired or Elastic Path order, a webhook
body — passes :func:`clean_json` before any other code looks at it. After that, every string
in it:

* is valid Unicode that encodes to UTF-8 (a lone surrogate such as ``"\\ud800"``, which JSON
  allows, becomes U+FFFD; ``str.encode`` and PostgreSQL would otherwise fail on it);
* holds no NUL (PostgreSQL text cannot store it) and no other C0/C1 control character or
  DEL: tab, newline and carriage return become a space, the rest become U+FFFD (an ESC or
  CSI could drive the operator's terminal when the text is printed). Nothing is deleted, so
  ``"12\x003"`` can never turn into another valid id ``"123"``;

and the structure is at most :data:`MAX_DEPTH` levels deep (deeper containers are replaced by
``None``: nothing real nests that far, and recursion on them would crash the caller).

:func:`clean_text` is the same rule for one string (CLI output, log values).
:func:`json_depth` measures how deep a raw JSON document nests *before* it is decoded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

MAX_DEPTH: Final = 32
"""Deepest nesting kept by :func:`clean_json` (an order is at most ~6 levels deep)."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_SPACE_LIKE = re.compile("[\t\n\r]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
REPLACEMENT: Final = "\ufffd"


def clean_text(text: str) -> str:
    """``text`` with lone surrogates and every control character other than tab, newline
    and CR (NUL, ESC, DEL, C1) replaced by U+FFFD, and tab/newline/CR by a space. Same
    length as ``text``; idempotent."""
    if text.isprintable():  # the common case: nothing to do
        return text
    text = _SURROGATE.sub(REPLACEMENT, text)
    text = _SPACE_LIKE.sub(" ", text)
    return _CONTROL.sub(REPLACEMENT, text)


def clean_json(value: Any, max_depth: int = MAX_DEPTH) -> Any:
    """A copy of a decoded JSON value with every string (keys too) passed through
    :func:`clean_text` and containers nested deeper than ``max_depth`` replaced by ``None``.
    Scalars other than strings are returned as they are. Never raises on JSON input."""
    return _clean(value, max_depth)


def _clean(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping):
        if depth <= 0:
            return None
        return {
            (clean_text(k) if isinstance(k, str) else k): _clean(v, depth - 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        if depth <= 0:
            return None
        return [_clean(v, depth - 1) for v in value]
    return value


def json_depth(raw: bytes | str, stop_at: int | None = None) -> int:
    """How deeply the JSON text ``raw`` nests ``[``/``{`` (strings are skipped), without
    decoding it. With ``stop_at``, scanning stops as soon as that depth is reached. A
    malformed document still gets an answer (the deepest nesting seen)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_at is not None and deepest >= stop_at:
                    return deepest
        elif byte in (0x5D, 0x7D):  # ] }
            depth = max(depth - 1, 0)
    return deepest
