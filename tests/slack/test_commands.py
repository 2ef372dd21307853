"""`/payments` subcommands, as a finance member types them."""

from __future__ import annotations

from bot.storage import models
from tests.harness import stripe_invoice_event
from tests.slack.conftest import paid_invoice, unmatched_payment


async def test_help_and_an_empty_command_list_every_subcommand(staff):
    for text in ("help", ""):
        response = await staff.command(text)
        assert response.status == 200
    for reply in staff.slack.replies("/commands/"):
        for sub in ("resend", "edit", "escalate", "status", "find", "unmatched", "audit", "help"):
            assert f"`{sub}" in reply
    assert len(staff.slack.responses) == 2
    assert all(r["response_type"] == "ephemeral" for r in staff.slack.responses)


async def test_unknown_subcommand_and_bad_arguments_get_usage(staff):
    await staff.command("refund INV-1")
    await staff.command("status")
    await staff.command("resend INV-1 email extra")
    unknown, missing, extra = staff.slack.replies()
    assert "I don't know `refund`" in unknown and "`resend" in unknown
    # Slack shows `&lt;invoice&gt;` as `<invoice>`; unescaped, `<invoice>` would be taken for a link.
    assert "`status` needs &lt;invoice&gt;" in missing and "Usage: `/payments status &lt;invoice&gt;`" in missing
    assert "at most 2 arguments" in extra and "[channel]" in extra


async def test_status_shows_payment_balance_and_every_notification(staff):
    await paid_invoice(staff)
    await staff.command("status INV-1042")
    [reply] = staff.slack.replies()
    assert "*Invoice INV-1042* · customer C1 · paid in full" in reply
    assert "balance $0.00" in reply and "$1,250.00 via stripe" in reply
    assert "receipt to customer via sendgrid (j***@example.com): sent" in reply
    assert "finance_card to finance via slack (C0FINANCE): sent" in reply


async def test_status_of_an_unknown_invoice_says_so(staff):
    await staff.command("status INV-404")
    assert staff.slack.replies() == ["There is no invoice `INV-404`."]


async def test_resend_queues_a_new_receipt_with_its_own_key(staff):
    await paid_invoice(staff)
    await staff.command("resend INV-1042")
    [reply] = staff.slack.replies()
    assert "Queued the receipt for invoice INV-1042 again via sendgrid" in reply
    await staff.bot.deliver()
    receipts = [n for n in await staff.bot.notifications() if n.purpose == "receipt"]
    assert len(receipts) == 2 and len({n.idempotency_key for n in receipts}) == 2
    assert all(n.status == "sent" for n in receipts)
    [resent] = await staff.audit("notification.resent")
    assert resent.actor == "slack:U0FIN1" and resent.invoice == "INV-1042"


async def test_resend_on_another_of_the_customers_channels(staff):
    await paid_invoice(staff, channels=("email", "slack"), slack_channel="C0SHARED")
    await staff.command("resend INV-1042 slack")
    await staff.bot.deliver()
    [shared] = staff.slack.posted("C0SHARED")
    assert "INV-1042" in shared["text"]
    await staff.command("resend INV-1042 sms")
    assert "cannot be reached on sms (usable channels: email, slack)" in staff.slack.replies()[-1]


async def test_resend_a_notification_sends_exactly_what_was_sent(staff):
    await paid_invoice(staff)
    [receipt] = [n for n in await staff.bot.notifications() if n.purpose == "receipt"]
    await staff.command(f"resend n{receipt.id}")
    await staff.bot.deliver()
    copies = [n for n in await staff.bot.notifications() if n.purpose == "receipt"]
    assert len(copies) == 2 and copies[1].payload == copies[0].payload
    assert [n.status for n in copies] == ["sent", "sent"]
    [resent] = await staff.audit("notification.resent")
    assert resent.detail["of"] == receipt.id


async def test_find_by_customer_email_and_amount(staff):
    await paid_invoice(staff)
    await staff.bot.add_invoice("INV-2000", "99.50")
    await staff.command("find jane")
    await staff.command("find jane@example.com")
    await staff.command("find $99.50")
    await staff.command("find nobody-like-this")
    by_name, by_email, by_amount, nothing = staff.slack.replies()
    assert "Jane Doe (C1, j***@example.com): INV-2000 ($99.50)" in by_name
    assert by_email == by_name.replace("`jane`", "`jane@example.com`")
    assert "invoice INV-2000 (C1): total $99.50, owes $99.50" in by_amount
    assert nothing == "No customer matches `nobody-like-this`."


async def test_find_reads_a_letter_and_digits_as_a_customer_id_and_a_sign_or_code_as_an_amount(staff):
    await staff.bot.add_customer("C000042", name="Forty Two Fabrication", email="ops@42.example")
    await staff.bot.add_invoice("INV-42", "42.00", customer_id="C000042")
    for term in ("C000042", "USD 42", "US$42", "42"):
        await staff.command(f"find {term}")
    by_id, *by_amount = staff.slack.replies()
    assert "Forty Two Fabrication (C000042" in by_id
    assert all("invoice INV-42 (C000042): total $42.00" in reply for reply in by_amount)


async def test_find_takes_percent_and_underscore_literally(staff):
    await staff.bot.add_customer()
    await staff.bot.add_customer("C2", name="100% Widgets", email="ops@widgets.example")
    await staff.bot.add_customer("C3", name="Under_Score Ltd", email="a_b@under.example")
    for term in ("%", "_", "100%", "ne_d", "a_b"):
        await staff.command(f"find {term}")
    percent, underscore, widgets, no_wildcard, email = staff.slack.replies()
    assert percent.count("• ") == 1 and "100% Widgets" in percent  # not every customer
    assert underscore.count("• ") == 1 and "Under_Score Ltd" in underscore
    assert widgets.count("• ") == 1 and "100% Widgets" in widgets
    assert no_wildcard == "No customer matches `ne_d`."  # as a wildcard `_` would match "Jane Doe"
    assert email.count("• ") == 1 and "Under_Score Ltd" in email


async def test_status_finds_an_invoice_whatever_the_case_typed(staff):
    await paid_invoice(staff)
    await staff.command("status inv-1042")
    [reply] = staff.slack.replies()
    assert reply.startswith("*Invoice INV-1042*")


async def test_unmatched_lists_the_review_queue(staff):
    await staff.command("unmatched")
    await unmatched_payment(staff)
    await staff.command("unmatched")
    empty, queue = staff.slack.replies()
    assert empty == "Nothing to review: every payment is matched."
    assert "*1 payment to review*" in queue and "$1,250.00 via stripe from s***@example.net" in queue


async def test_audit_shows_the_invoices_trail(staff):
    await paid_invoice(staff)
    await staff.command("audit INV-1042")
    [reply] = staff.slack.replies()
    assert "`payment.matched` by system" in reply and "`notification.sent` by system · sendgrid" in reply


async def test_edit_command_opens_the_modal_with_the_message_text(staff):
    await paid_invoice(staff)
    await staff.command("edit INV-1042")
    [view] = staff.slack.views
    assert view["callback_id"] == "payment_edit_modal"
    text = view["blocks"][1]["element"]["initial_value"]
    assert text.startswith("Hi Jane Doe,") and "invoice INV-1042 is now paid in full" in text.replace("Invoice", "invoice")
    assert staff.slack.replies() == []


async def test_edit_of_an_unmatched_payment_explains(staff):
    await unmatched_payment(staff)
    [payment] = await staff.bot.rows(models.Payment)
    await staff.command(f"edit p{payment.id}")
    assert "is not matched to a customer's invoice" in staff.slack.replies()[0]
    assert staff.slack.views == []


async def test_escalate_command_posts_to_the_escalation_channel_through_the_outbox(staff):
    await paid_invoice(staff)
    await staff.command("escalate INV-1042 customer says they paid twice")
    assert "Escalated payment #1 to C0ESCALATE" in staff.slack.replies()[0]
    await staff.bot.deliver()
    [post] = staff.slack.posted("C0ESCALATE")
    assert post["text"].startswith("<@U0ONCALL> <!subteam^S0ONCALL>")
    assert "customer says they paid twice" in post["text"]
    assert [e["action_id"] for b in post["blocks"] if b["type"] == "actions" for e in b["elements"]] == [
        "escalation_acknowledge"]
    [escalated] = await staff.audit("notification.escalated")
    assert escalated.actor == "slack:U0FIN1" and escalated.detail["note"] == "customer says they paid twice"
    await staff.command("escalate INV-1042")
    assert "already escalated by <@U0FIN1>" in staff.slack.replies()[-1]


async def test_a_usergroup_member_is_staff(staff):
    await staff.command("unmatched", user="U0GROUPIE")
    assert staff.slack.replies() == ["Nothing to review: every payment is matched."]
    assert await staff.audit("staff.refused") == []
