"""JSON at speed, with the standard library's meaning (one copy, used by every hot path).

A poller serving many stores spends much of its CPU decoding ShopWired pages and re-reads
(50–100 orders a call, about 1,400 orders a second for 50 stores at the default re-read
share) and fingerprinting the records it has seen. :mod:`orjson` does both several times
faster than :mod:`json`; it is also stricter, so anything it refuses goes to :mod:`json`,
which decides. What a caller gets is therefore what ``json`` would give it:

=====================================  ==================  ===========================
input                                  orjson              result
=====================================  ==================  ===========================
ordinary JSON                          parses              orjson's value (the same)
``NaN`` / ``Infinity``, integers over  refuses             ``json``'s value
64 bits, lone surrogates, > 1024 deep
not JSON                               refuses             ``ValueError`` (from json)
=====================================  ==================  ===========================

:func:`dumps_compact` is the same for writing: compact UTF-8, non-ASCII characters as they
are; a value orjson cannot write (integers over 64 bits, keys that are not strings) is
written by ``json``. :func:`canonical_bytes` is for fingerprints kept in memory only (never
stored, never compared across versions): keys sorted; ``NaN``/``Infinity`` come out as
``null`` there, so a caller that must tell them apart must not use it for that.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(text: str | bytes) -> Any:
    """The JSON value of ``text``; raises ValueError (or RecursionError) as ``json.loads``."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def dumps_compact(obj: Any) -> bytes:
    """Compact UTF-8 JSON of ``obj`` (``separators=(",", ":")``, ``ensure_ascii=False``)."""
    try:
        return orjson.dumps(obj)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass")


def canonical_bytes(obj: Any) -> bytes:
    """``obj`` as JSON with sorted keys, for an in-memory fingerprint; raises TypeError or
    ValueError when it is not JSON-serialisable."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8", "surrogatepass")
