"""Golden tests of the Adaptive Card JSON (`cards/teams.py`): what Teams is sent, byte for byte.

Run with `PAYBOT_UPDATE_GOLDEN=1` to rewrite the files after an intended change, then read the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bot.text import mrkdwn
from cards import teams as cards

GOLDEN = Path(__file__).parent / "golden"
HOSTILE = "Jane [click](https://evil.example) **Doe** <at>everyone</at>"
PAID = {"payment_id": 42, "amount": "$1,250.00", "customer_name": HOSTILE, "invoice_number": "INV-1042",
        "partial": False, "overpaid": False, "credit": "$0.00", "balance": "$0.00", "source": "stripe",
        "paid_at": "Nov 28, 2026, 12:00 PM", "match_reason": "invoice number in the payment", "unreachable": None,
        "payer_name": "Jane Doe", "payer_email": "jane@example.com", "quoted": "INV-1042", "payment_ref": "pi_123",
        "kind": "refunded", "note": "receipt via teams (BotNotInConversationRoster)"}

CASES: dict[str, Any] = {
    "payment_received": lambda: cards.payment_confirmation(PAID),
    "payment_received_not_told": lambda: cards.payment_confirmation(PAID | {"unreachable": "no email on file"}),
    "needs_review": lambda: cards.needs_review(PAID | {"invoice_number": None}),
    "reversal": lambda: cards.reversal(PAID),
    "dead_letter": lambda: cards.dead_letter(PAID),
    "escalation": lambda: cards.escalation(PAID, escalation_id=3, oncall=["0ca11000-aaaa-4bbb-8ccc-dddddddddddd"],
                                           escalated_by="5b1d7e52-0c3a-4a8e-9d0f-6a1b2c3d4e5f", round_=2),
    "customer_receipt": lambda: cards.customer_receipt("Thank you for paying INV\\-1042\\."),
    "after_resend": lambda: cards.with_activity(cards.payment_confirmation(PAID), [
        cards.activity_line("5b1d7e52-0c3a-4a8e-9d0f-6a1b2c3d4e5f", "resent the receipt via teams",
                            "2026-11-28 12:00 UTC")], 1),
    "edit_form": lambda: cards.edit_form(mrkdwn("*{}* · {} · payment #{}", "INV-1042", "$1,250.00", 42),
                                         "Dear Jane, thank you.", 42, 1),
    "match_form": lambda: cards.match_form(mrkdwn("*{}* via stripe", "$310.00"),
                                           [("INV-1042", "INV-1042 · C1 · owes $310.00")], 7, 0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_card_json_is_as_recorded(name: str) -> None:
    card = CASES[name]()
    path = GOLDEN / f"{name}.json"
    rendered = json.dumps(card, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("PAYBOT_UPDATE_GOLDEN"):
        path.write_text(rendered)
    assert rendered == path.read_text()


def test_outside_text_cannot_link_or_mention() -> None:
    card = json.dumps(cards.payment_confirmation(PAID), ensure_ascii=False)
    assert "[click](" not in card and "<at>" not in card and "**Doe**" not in card
    assert "Jane \\\\[click\\\\](https://evil.example) \\\\*\\\\*Doe\\\\*\\\\* &lt;at&gt;everyone&lt;/at&gt;" in card


def test_staff_cards_are_version_1_5_with_universal_actions_and_customer_cards_1_4() -> None:
    staff = cards.payment_confirmation(PAID)
    assert staff["version"] == "1.5" and {a["type"] for a in staff["actions"]} == {"Action.Execute"}
    assert [a["verb"] for a in staff["actions"]] == ["payment_resend", "payment_edit", "payment_escalate"]
    assert cards.customer_receipt("x")["version"] == "1.4" and "actions" not in cards.customer_receipt("x")


def test_the_manifest_lists_every_payments_subcommand_and_nothing_else() -> None:
    from bot.handlers.slack_commands import SUBCOMMANDS

    manifest = json.loads((Path(__file__).parents[2] / "deploy" / "teams" / "manifest.json").read_text())
    [bot] = manifest["bots"]
    [commands] = bot["commandLists"]
    assert [c["title"] for c in commands["commands"]] == [f"payments {name}" for name in SUBCOMMANDS]
    assert all(len(c["title"]) <= 32 and len(c["description"]) <= 128 for c in commands["commands"])
    assert bot["botId"] == manifest["id"] == "{{TEAMS_APP_ID}}"
