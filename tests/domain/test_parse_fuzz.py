"""Bad input never stops the line: any JSON at all either maps or is a SkippableError."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sync.domain.mapping import map_order
from sync.domain.parse_shopwired import parse_shopwired_order
from sync.errors import SkippableError

hostile_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "\x00", "NaN", "Infinity", "-1e999", "1e308", "💥", "'; DROP",
                     "<script>", "a@b", "@", "0x10", "١٢٣", "\u202e"]),
)
scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True), hostile_text,
)
json_value = st.recursive(
    scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=12,
)


def mutated_orders(base: dict[str, Any]) -> st.SearchStrategy[Any]:
    keys = st.sampled_from([
        *sorted(base), "products.0.price", "products.0.quantity", "status.type",
        "billingAddress.emailAddress", "refunds", "tax.value", "products.0.vatRate",
    ])

    def apply(changes: list[tuple[str, Any]]) -> dict[str, Any]:
        doc = json.loads(json.dumps(base))
        for path, value in changes:
            target: Any = doc
            parts = path.split(".")
            for p in parts[:-1]:
                if isinstance(target, list):
                    target = target[int(p)] if target else {}
                elif isinstance(target, dict):
                    target = target.setdefault(p, {})
            if isinstance(target, dict):
                target[parts[-1]] = value
        return doc

    return st.lists(st.tuples(keys, json_value), min_size=1, max_size=5).map(apply)


def check(raw: Any, status_map: Any, ctx: Any) -> None:
    try:
        order = parse_shopwired_order(raw)
        body = map_order(order, status_map.resolve(order.status), ctx)
    except SkippableError as exc:
        assert exc.message
        return
    json.dumps(body, allow_nan=False)  # whatever we send is valid JSON


@settings(max_examples=1500)
@given(data=st.data())
def test_mutated_real_orders_never_crash(sample_order, status_map, ctx, data):
    check(data.draw(mutated_orders(sample_order)), status_map, ctx)


@settings(max_examples=800)
@given(raw=json_value)
def test_arbitrary_json_never_crashes(status_map, ctx, raw):
    check(raw, status_map, ctx)


def test_huge_order_is_handled(sample_order, status_map, ctx):
    sample_order["products"] = sample_order["products"] * 1500
    order = parse_shopwired_order(sample_order)
    body = map_order(order, status_map.resolve(order.status), ctx)
    assert len({ln["order_line_id"] for ln in body["order_lines"]}) == 1500
