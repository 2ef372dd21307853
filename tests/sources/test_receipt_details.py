"""What each platform says about how and when a customer paid reaches the receipt: Square's card, Wave's method
and its date-only payment day (no invented midnight UTC)."""

from __future__ import annotations

from bot.storage import models
from tests.sources.helpers import load, mail_text, post


async def given_jane_owes_1250(paybot) -> None:  # type: ignore[no-untyped-def]
    await paybot.add_customer()
    await paybot.add_invoice("INV-1042", "1250.00")


async def test_square_card_brand_and_last_four_are_in_the_receipt(paybot, sendgrid):
    await given_jane_owes_1250(paybot)
    assert (await post(paybot, "square", load("square", "payment_created_completed.json"))).status == 200
    await paybot.deliver()
    [mail] = sendgrid.accepted
    assert "Method: Visa card ending in 1111" in mail_text(mail)
    assert "Reference: KkAkhdMsgzn59SM8A89WgKwekxLZY" in mail_text(mail)


async def test_wave_payment_day_is_a_date_and_its_method_is_named(paybot, sendgrid):
    await given_jane_owes_1250(paybot)
    body = load("wave", "zapier_partial.json", payment_method="Bank Transfer")
    assert (await post(paybot, "wave", body)).status == 200
    [payment] = await paybot.rows(models.Payment)
    assert payment.date_only is True
    await paybot.deliver()
    text = mail_text(sendgrid.accepted[0])
    assert "Paid on: November 28, 2026\n" in text
    assert "Method: bank transfer" in text
    assert "00:00" not in text and "UTC" not in text


async def test_wave_payment_with_a_time_keeps_it(paybot, sendgrid):
    await given_jane_owes_1250(paybot)
    body = load("wave", "zapier_partial.json", payment_date="2026-11-28T15:30:00Z")
    assert (await post(paybot, "wave", body)).status == 200
    await paybot.deliver()
    assert "Received: November 28, 2026, 3:30\u202fPM UTC" in mail_text(sendgrid.accepted[0])
