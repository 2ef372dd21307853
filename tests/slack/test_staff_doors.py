"""Every staff door, knocked on by someone who is not finance staff: a colleague outside finance, and a guest
from a customer's workspace in a Slack Connect channel. Each is refused, audited, and changes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.storage import models
from tests.harness import stripe_invoice_event
from tests.slack.conftest import SlackStaff, paid_invoice, picked, text_input

#: who knocks: the keyword arguments of a command, a click and a submission
STRANGERS: dict[str, dict[str, dict[str, str]]] = {
    "colleague outside finance": {"command": {"user": "U0INTERN"}, "click": {"user": "U0INTERN"},
                                  "submit": {"user": "U0INTERN"}},
    "Slack Connect guest": {"command": {"user": "U0GUEST", "channel": "C0SHARED", "team": "T0CUSTOMER"},
                            "click": {"user": "U0GUEST", "user_team": "T0CUSTOMER"},
                            "submit": {"user": "U0GUEST", "user_team": "T0CUSTOMER"}},
}

Door = Callable[[SlackStaff, dict[str, Any], dict[str, dict[str, str]]], Awaitable[Any]]


def command(text: str) -> Door:
    return lambda staff, _, who: staff.command(text, **who["command"])


def click(card: str, action_id: str) -> Door:
    return lambda staff, cards, who: staff.click(cards[card], action_id, **who["click"])


def submit(modal: str, values: dict[str, Any]) -> Door:
    return lambda staff, cards, who: staff.submit(values, view=cards[modal], **who["submit"])


#: door → (how it is knocked on, the action audited as refused)
DOORS: dict[str, tuple[Door, str]] = {
    "/payments resend": (command("resend INV-1042"), "command"),
    "/payments resend n<id> channel": (command("resend n1 email"), "command"),
    "/payments edit": (command("edit INV-1042"), "command"),
    "/payments escalate": (command("escalate INV-1042 please"), "command"),
    "/payments status": (command("status INV-1042"), "command"),
    "/payments find": (command("find jane"), "command"),
    "/payments unmatched": (command("unmatched"), "command"),
    "/payments audit": (command("audit INV-1042"), "command"),
    "/payments help": (command("help"), "command"),
    "Resend button": (click("card", "payment_resend"), "payment_resend"),
    "Edit button": (click("card", "payment_edit"), "payment_edit"),
    "Escalate button": (click("card", "payment_escalate"), "payment_escalate"),
    "Match to invoice… button": (click("review", "payment_match"), "payment_match"),
    "Acknowledge button": (click("escalation", "escalation_acknowledge"), "escalation_acknowledge"),
    "edit modal submission": (submit("edit_modal", {"edit_text": {"text": text_input("Pay us twice!")}}),
                              "payment_edit_modal"),
    "match modal submission": (submit("match_modal", {"match_pick": {"invoice": picked("INV-1042")}}),
                               "payment_match_modal"),
}


async def doors_to_knock_on(staff: SlackStaff) -> dict[str, Any]:
    """A paid invoice's card, a needs-review card, an escalation, and the two modals, all opened by finance."""
    card = await paid_invoice(staff)
    await staff.bot.post_stripe(stripe_invoice_event("evt_stray", number="INV-9999", email="stray@example.net"))
    staff.bot.clock.advance(1)  # one Slack message per second per channel
    await staff.bot.deliver()
    review = staff.card()
    await staff.command("escalate INV-1042")
    await staff.bot.deliver()
    await staff.click(card, "payment_edit")
    await staff.click(review, "payment_match")
    edit_modal, match_modal = staff.slack.views[-2:]
    return {"card": staff.card(index=0), "review": review, "escalation": staff.card("C0ESCALATE"),
            "edit_modal": edit_modal | {"id": "V0EDIT"}, "match_modal": match_modal | {"id": "V0MATCH"}}


async def state(staff: SlackStaff) -> dict[str, Any]:
    """Everything a staff action could change."""
    bot, slack = staff.bot, staff.slack
    return {
        "outbox": [(n.id, n.status) for n in await bot.notifications()],
        "payments": [(p.id, p.invoice_id, p.customer_id, p.match_rule) for p in await bot.rows(models.Payment)],
        "invoices": [(i.number, i.paid_minor) for i in await bot.rows(models.Invoice)],
        "escalations": [(e.id, e.acknowledged_by, e.rounds) for e in await bot.rows(models.Escalation)],
        "edits": len(await bot.rows(models.MessageEdit)),
        "staff actions done": [a.id for a in await bot.rows(models.StaffAction, models.StaffAction.summary.is_not(None))],
        "slack calls": [c.path for c in slack.calls if c.path in ("/chat.postMessage", "/chat.update", "/views.open")],
        "answers": [r["text"] for r in slack.responses if not r["text"].startswith("Sorry, that is only for")],
    }


async def test_every_staff_door_refuses_strangers_audits_and_changes_nothing(staff):
    cards = await doors_to_knock_on(staff)
    problems = []
    for door, (knock, action) in DOORS.items():
        for stranger, who in STRANGERS.items():
            before, refusals = await state(staff), len(staff.slack.responses)
            refused_before = len(await staff.audit("staff.refused"))
            response = await knock(staff, cards, who)
            user = who["command"]["user"]
            refused = (await staff.audit("staff.refused"))[refused_before:]
            if response.status != 200:
                problems.append(f"{door} / {stranger}: HTTP {response.status}")
            if [(r.actor, r.detail["action"]) for r in refused] != [(f"slack:{user}", action)]:
                problems.append(f"{door} / {stranger}: audited {[(r.actor, r.detail) for r in refused]}")
            if (after := await state(staff)) != before:
                problems.append(f"{door} / {stranger}: changed {[k for k in before if before[k] != after[k]]}")
            said = [r["text"] for r in staff.slack.responses[refusals:]]
            if not all(s.startswith("Sorry, that is only for the finance team") for s in said):
                problems.append(f"{door} / {stranger}: answered {said}")
    assert not problems, "\n".join(problems)
    # Finance, knocking on the same doors afterwards, gets in: the refusals used up nothing.
    await staff.click(cards["escalation"], "escalation_acknowledge")
    assert [e.acknowledged_by for e in await staff.bot.rows(models.Escalation)] == ["slack:U0FIN1"]
