"""The finance card's buttons and the modals they open; each updates the card in place."""

from __future__ import annotations

from bot.storage import models
from tests.slack.conftest import paid_invoice, picked, text_input, unmatched_payment


def activity(card: dict) -> str:
    [block] = [b for b in card["blocks"] if b.get("block_id") == "paybot_activity"]
    return block["elements"][0]["text"]


def values(card: dict) -> dict[str, str]:
    return {e["action_id"]: e["value"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]}


async def test_resend_button_resends_and_shows_who_on_the_card(staff):
    card = await paid_invoice(staff)
    response = await staff.click(card, "payment_resend")
    assert response.status == 200
    updated = staff.card()
    assert activity(updated) == "<@U0FIN1> resent the receipt via sendgrid · 2026-11-28 12:00 UTC"
    assert values(updated) == {"payment_resend": "1:1", "payment_edit": "1:1", "payment_escalate": "1:1"}
    assert [c.json()["ts"] for c in staff.slack.to("/chat.update")] == [card["ts"]]
    assert "Queued the receipt for invoice INV-1042 again" in staff.slack.replies("/actions/")[0]
    await staff.bot.deliver()
    assert len([n for n in await staff.bot.notifications() if n.purpose == "receipt"]) == 2


async def test_a_double_click_resends_once(staff):
    card = await paid_invoice(staff)
    await staff.click(card, "payment_resend")
    await staff.click(card, "payment_resend")  # the card as it was before the first click's update
    assert len([n for n in await staff.bot.notifications() if n.purpose == "receipt"]) == 2
    assert len(await staff.audit("notification.resent")) == 1
    await staff.click(staff.card(), "payment_resend")  # a deliberate second resend, from the updated card
    assert len(await staff.audit("notification.resent")) == 2
    assert activity(staff.card()).count("resent the receipt") == 2


async def test_escalate_button_posts_and_marks_the_card(staff):
    card = await paid_invoice(staff)
    await staff.click(card, "payment_escalate")
    assert activity(staff.card()).startswith("<@U0FIN1> escalated it ·")
    await staff.bot.deliver()
    [post] = staff.slack.posted("C0ESCALATE")
    assert "Payment escalated* by <@U0FIN1>" in post["blocks"][0]["text"]["text"]


async def test_edit_button_modal_saves_resends_and_audits_before_and_after(staff):
    card = await paid_invoice(staff)
    await staff.click(card, "payment_edit")
    [view] = staff.slack.views
    before = view["blocks"][1]["element"]["initial_value"]
    response = await staff.submit({"edit_text": {"text": text_input("Dear Jane, thank you for paying INV-1042.")}})
    assert response.status == 200 and await response.text() == ""
    [edited] = await staff.audit("notification.edited")
    assert edited.actor == "slack:U0FIN1" and edited.invoice == "INV-1042"
    assert edited.detail["before"] == before
    assert edited.detail["after"] == "Dear Jane, thank you for paying INV-1042."
    assert "edited the receipt and resent it via sendgrid" in activity(staff.card())
    await staff.bot.deliver()
    mail = staff.bot.runtime.channels["sendgrid"]
    [_, resent] = [n for n in await staff.bot.notifications() if n.purpose == "receipt"]
    text = next(c["value"] for c in resent.payload["content"] if c["type"] == "text/plain")
    assert text == "Dear Jane, thank you for paying INV-1042." and mail is not None
    # Later resends keep the staff wording.
    await staff.command("resend INV-1042")
    assert [e.after for e in await staff.bot.rows(models.MessageEdit)] == [text]
    last = (await staff.bot.notifications())[-1]
    assert next(c["value"] for c in last.payload["content"] if c["type"] == "text/plain") == text


async def test_edit_modal_rejects_empty_and_unchanged_text_on_the_field(staff):
    card = await paid_invoice(staff)
    await staff.click(card, "payment_edit")
    before = staff.slack.views[-1]["blocks"][1]["element"]["initial_value"]
    empty = await staff.submit({"edit_text": {"text": text_input("   ")}})
    same = await staff.submit({"edit_text": {"text": text_input(before)}})
    assert await empty.json() == {"response_action": "errors", "errors": {"edit_text": "The message cannot be empty."}}
    assert "change something" in (await same.json())["errors"]["edit_text"]
    assert await staff.audit("notification.edited") == []


async def test_match_button_picker_matches_and_thanks_the_customer(staff):
    card = await unmatched_payment(staff)
    assert set(values(card)) == {"payment_match", "payment_escalate"}
    await staff.click(card, "payment_match")
    [view] = staff.slack.views
    [pick] = [b for b in view["blocks"] if b.get("block_id") == "match_pick"]
    assert [o["value"] for o in pick["element"]["options"]] == ["INV-1042"]
    await staff.submit({"match_pick": {"invoice": picked("INV-1042")}, "match_number": {"number": text_input("")}})
    [payment] = await staff.bot.rows(models.Payment)
    assert payment.match_rule == "staff" and payment.settlement == "paid" and payment.balance_minor == 0
    [matched] = await staff.audit("payment.matched_by_staff")
    assert matched.actor == "slack:U0FIN1" and matched.invoice == "INV-1042" and matched.customer_id == "C1"
    updated = staff.card()
    assert "Payment received" in updated["blocks"][0]["text"]["text"]  # no longer "needs review"
    assert "matched it to INV-1042" in activity(updated)
    await staff.bot.deliver()
    [receipt] = [n for n in await staff.bot.notifications() if n.purpose == "receipt"]
    assert receipt.recipient == "jane@example.com" and receipt.status == "sent"


async def test_match_modal_errors_for_unknown_or_conflicting_invoices(staff):
    card = await unmatched_payment(staff)
    await staff.bot.add_invoice("INV-EUR", "10.00", currency="EUR")
    await staff.click(card, "payment_match")
    unknown = await staff.submit({"match_number": {"number": text_input("INV-NOPE")}})
    both = await staff.submit({"match_pick": {"invoice": picked("INV-1042")},
                               "match_number": {"number": text_input("INV-EUR")}})
    currency = await staff.submit({"match_number": {"number": text_input("INV-EUR")}})
    none = await staff.submit({})
    assert (await unknown.json())["errors"] == {"match_number": "There is no invoice INV-NOPE."}
    assert (await both.json())["errors"] == {"match_number": "Choose an invoice or type one, not both."}
    assert (await currency.json())["errors"] == {"match_number": "INV-EUR is in EUR; the payment is in USD."}
    assert (await none.json())["errors"] == {"match_number": "Choose an invoice or type its number."}
    assert await staff.audit("payment.matched_by_staff") == []


async def test_matching_an_already_matched_payment_is_refused(staff):
    card = await unmatched_payment(staff)
    await staff.click(card, "payment_match")
    view = staff.slack.views[-1]
    await staff.submit({"match_number": {"number": text_input("INV-1042")}})
    second = staff.submit_body({"match_number": {"number": text_input("INV-1042")}}, view=view | {"id": "V9999"})
    await staff.post(second)
    assert "already matched to INV-1042" in staff.slack.replies()[-1]
    assert len(await staff.audit("payment.matched_by_staff")) == 1
