"""Every Teams staff door — each subcommand, each card button, each form's Save, Acknowledge — refuses a
non-finance user, audits the refusal once, and changes nothing."""

from __future__ import annotations

from bot.storage import models
from tests.teams.conftest import ESCALATION_CONV, FINANCE_CONV, STRANGER, action, paid_invoice

TABLES = (models.Notification, models.Payment, models.Invoice, models.Escalation, models.MessageEdit)


async def snapshot(staff) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {model.__name__: len(await staff.bot.rows(model)) for model in TABLES}


async def test_every_door_refuses_a_stranger(staff):
    card_id, card = await paid_invoice(staff)
    await staff.install(ESCALATION_CONV)
    await staff.click(card_id, "payment_escalate", action(card, "payment_escalate"))  # an escalation to acknowledge
    staff.bot.clock.advance(1)
    await staff.bot.deliver()
    escalation_id, _ = staff.card(ESCALATION_CONV)
    _, card = staff.card(FINANCE_CONV)
    before, posts, refusals = await snapshot(staff), len(staff.teams.posts), 0
    for words in ("resend INV-1042", "edit INV-1042", "escalate INV-1042 now", "status INV-1042", "find Jane",
                  "unmatched", "audit INV-1042", "help"):
        await staff.command(words, user=STRANGER)
        refusals += 1
    data = action(card, "payment_resend")
    for verb, extra in (("payment_resend", {}), ("payment_edit", {}), ("payment_escalate", {}),
                        ("payment_match", {}), ("payment_edit_modal", {"text": "Hello"}),
                        ("payment_match_modal", {"number": "INV-1042"}), ("payment_cancel", {})):
        answer = await (await staff.click(card_id, verb, data | extra, user=STRANGER)).json()
        assert answer["value"].startswith("Sorry, that is only for the finance team"), verb
        refusals += 1
    answer = await (await staff.click(escalation_id, "escalation_acknowledge", {"escalation_id": 1},
                                      user=STRANGER, conversation=ESCALATION_CONV)).json()
    assert answer["value"].startswith("Sorry, that is only for the finance team")
    refusals += 1
    assert await snapshot(staff) == before
    assert len(await staff.audit("staff.refused")) == refusals
    assert [r.startswith("Sorry, that is only for the finance team") for r in staff.replies()][-8:] == [True] * 8
    assert len(staff.teams.posts) == posts + 8  # the eight polite refusals, nothing else
    [escalation] = await staff.bot.rows(models.Escalation)
    assert escalation.acknowledged_at is None
