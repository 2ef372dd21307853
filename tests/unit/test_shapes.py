"""Templates rendered by shape (`bot.shapes`) read exactly as Jinja renders them: every built-in template, every
surface, en and es, hostile and edited values, through one cache; and the operator's templates that do more than
print and test their values (pure: no database, no network)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError

from bot import shapes
from bot.domain.business import Business
from bot.domain.matching import Settlement
from bot.domain.money import Money
from bot.domain.parties import Customer
from bot.domain.payments import PaymentKind
from bot.domain.receipt import Receipt
from bot.messages import Message, Purpose, Surface, Wording, _environment, render, template_data

SHOP = Business(name="Alvarez Welding", address="12 Forge Rd, Laredo TX", phone="+1 956 555 0100",
                reply_to="billing@alvarez-weld.example", logo_url="https://alvarez-weld.example/logo.png",
                locale="en-US", timezone="America/Chicago")
HOSTILE = "<script>alert('x')</script> & \"Bob\"\u202e\n*bold* <!channel>"


def receipt(**fields: object) -> Receipt:
    values: dict[str, object] = dict(
        payment_id=7, kind=PaymentKind.PAYMENT, source="stripe", amount=Money.of("980.50", "USD"),
        paid_at=datetime(2026, 11, 28, 18, 5, tzinfo=UTC), customer_id="C1", customer_name="Ferretería Norte",
        locale="en-US", invoice_number="INV-1042", invoice_total=Money.of("980.50", "USD"),
        balance=Money.of("0", "USD"), settlement=Settlement.FULL, match_reason="invoice number INV-1042",
        payment_ref="pi_3QxYz", details={"method": "card", "card_brand": "visa", "card_last4": "4242"})
    return Receipt(**(values | fields))  # type: ignore[arg-type]


#: One message after another through the same cache: the shapes of the first must not leak into the next.
VARIANTS: list[tuple[dict[str, Any], Business, dict[str, Any]]] = [
    ({}, SHOP, {}),
    ({"locale": "es-MX", "timezone": "America/Mexico_City"}, SHOP, {}),
    ({"customer_name": "Another Customer", "amount": Money.of("12.00", "USD"), "payment_ref": "pi_other"}, SHOP, {}),
    ({"customer_name": HOSTILE, "invoice_number": HOSTILE, "payment_ref": HOSTILE}, SHOP, {"note": HOSTILE}),
    ({"customer_name": None, "payment_ref": None, "details": {}}, Business(), {}),
    ({"settlement": Settlement.PARTIAL, "balance": Money.of("400.00", "USD"), "locale": "es"}, SHOP, {}),
    ({"settlement": Settlement.OVER, "balance": Money.of("-5.00", "USD"), "date_only": True}, SHOP,
     {"unreachable": "email: no email on file"}),
    ({"invoice_number": None, "settlement": None, "balance": None, "invoice_total": None}, SHOP, {}),
    ({"customer_name": ""}, replace(SHOP, reply_to=None), {}),
    ({"locale": "de-DE", "amount": Money.of("1250.00", "EUR")}, replace(SHOP, phone=None, logo_url=None), {}),
    ({"customer_name": "Ferretería Norte"}, replace(SHOP, reply_to=HOSTILE, name=HOSTILE), {"note": ""}),
    ({}, SHOP, {}),  # the first again, after all the others
]


def datas() -> list[tuple[Purpose, dict[str, Any]]]:
    found = []
    for fields, business, extra in VARIANTS:
        for purpose in (Purpose.RECEIPT, Purpose.FINANCE_CARD, Purpose.NEEDS_REVIEW, Purpose.REVERSAL):
            customer = Customer(id="C1", name="Ferretería Norte", email="ap@norte.example")
            message = replace(Message(purpose, "ap@norte.example", receipt(**fields), customer),
                              wording=Wording(business), **extra)
            found.append((purpose, template_data(message)))
    return found


@pytest.mark.parametrize("surface", list(Surface))
def test_every_built_in_template_reads_as_jinja_renders_it(surface: Surface) -> None:
    env = _environment(None, surface)
    names = [n for n in env.list_templates() if n != "text.html"]
    checked = 0
    for _, data in datas():
        for name in names:
            template = env.get_template(name)
            try:
                expected = template.render(data)
            except UndefinedError:  # a template for other facts (the audit anchor's key id, …)
                with pytest.raises(UndefinedError):
                    shapes.render(template, data)
                continue
            assert shapes.render(template, data) == expected, name
            checked += 1
    assert checked > 500
    receipt_plan = shapes._plan(env.get_template("receipt.html"))
    assert receipt_plan is not None and "amount" in receipt_plan.filled  # rendered by shape, not the slow way


def test_a_rendered_message_is_the_same_with_and_without_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = [Message(Purpose.RECEIPT, "ap@norte.example", receipt(**fields), wording=Wording(business))
                for fields, business, _ in VARIANTS]
    cached = [render(m) for m in messages] + [render(m) for m in messages]
    monkeypatch.setattr(shapes, "render", lambda template, data: template.render(data))
    assert cached == [render(m) for m in messages] * 2


def operator_env(tmp_path: Path, **templates: str):  # type: ignore[no-untyped-def]
    folder = tmp_path / "templates"
    folder.mkdir()
    for name, text in templates.items():
        (folder / name.replace("_", ".")).write_text(text, encoding="utf-8")
    _environment.cache_clear()
    return _environment(str(folder), Surface.EMAIL)


@pytest.mark.parametrize("text, filled, keyed", [
    ("{{ greeting_name | upper }} paid {{ amount }}", ["amount"], ["greeting_name"]),
    ('{% if invoice_number == "INV-1" %}first{% else %}{{ invoice_number }}{% endif %}', [], ["invoice_number"]),
    ("{{ 'Hi ' ~ greeting_name if greeting_name else 'Hello' }}, {{ amount or 'nothing' }}", ["amount"],
     ["greeting_name"]),
    ("{% if not partial and (overpaid or amount) %}{{ credit and balance }}{% endif %}",
     ["amount", "balance", "credit", "overpaid", "partial"], []),
])
def test_operator_templates_that_make_something_of_a_value_key_the_shape_on_it(tmp_path, text, filled, keyed):
    env = operator_env(tmp_path, mine_txt=text)
    template = env.get_template("mine.txt")
    plan = shapes._plan(template)
    assert plan is not None and list(plan.filled) == filled and list(plan.keyed) == keyed
    for _, data in datas():
        assert shapes.render(template, data) == template.render(data)


@pytest.mark.parametrize("text", [
    "{% for c in greeting_name %}{{ c }}{% endfor %}",
    "{{ range(3) | list }} {{ amount }}",
    "{{ [amount, balance] | random }}",
    "{% set x = amount %}{{ x }}",
    "{% include greeting_name %}",
])
def test_templates_that_loop_call_or_set_are_rendered_the_ordinary_way(tmp_path: Path, text: str) -> None:
    template = operator_env(tmp_path, mine_txt=text).get_template("mine.txt")
    assert shapes._plan(template) is None


def test_a_value_that_shapes_every_message_differently_stops_being_cached(tmp_path: Path) -> None:
    template = operator_env(tmp_path, mine_txt="{{ payment_ref | upper }}: {{ amount }}").get_template("mine.txt")
    data = datas()[0][1]
    for n in range(shapes.MAX_SHAPES + 10):
        assert shapes.render(template, data | {"payment_ref": f"pi_{n}"}) == f"PI_{n}: $980.50"
    plan = shapes._plan(template)
    assert plan is not None and len(plan.shapes) == shapes.MAX_SHAPES


def test_a_missing_value_fails_as_jinja_fails() -> None:
    template = _environment(None, Surface.EMAIL).get_template("receipt.txt")
    data = datas()[0][1]
    del data["amount"]
    with pytest.raises(UndefinedError, match="amount"):
        shapes.render(template, data)


def test_equal_values_that_read_differently_are_different_shapes(tmp_path: Path) -> None:
    from decimal import Decimal

    template = operator_env(tmp_path, mine_txt="{{ balance ~ '' }}|{{ credit }}").get_template("mine.txt")
    data = datas()[0][1]
    for balance, credit in ((Decimal("0"), 0), (Decimal("0.00"), False), (0.0, 0), (-0.0, "")):
        assert shapes.render(template, data | {"balance": balance, "credit": credit}) == \
            template.render(data | {"balance": balance, "credit": credit})
