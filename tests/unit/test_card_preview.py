"""A Block Kit card drawn as Slack shows it: bold and escapes undone, fields aligned, buttons in brackets."""

from __future__ import annotations

from cards.preview import as_text
from cards.slack import needs_review


def test_a_card_reads_as_slack_shows_it():
    blocks = needs_review({"payment_id": 7, "amount": "$310.00", "source": "stripe", "payer_email": "a&b@x.example",
                           "customer_name": "<Dockside>", "match_reason": "no invoice named", "paid_at": "today"})
    assert as_text(blocks) == [
        "🔍 Payment needs review — $310.00 via stripe",
        "Payer:        a&b@x.example",
        "Why:          no invoice named",
        "Received:     today",
        "[ Match to invoice… ]  [ Escalate ]",
        "Payment #7 · no customer message was sent",
    ]
