"""A payer, a platform or a customer record names itself `<!channel> <https://evil.example|…>`: every surface it
reaches, staff and customer, shows it as text. Nothing pings a channel, nothing plants a disguised link."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes.sendgrid import errors
from tests.harness import STRIPE_SECRET, stripe_invoice_event
from tests.slack.conftest import SlackStaff
from tests.sources.helpers import load, mail_text

HOSTILE = "<!channel> <https://evil.example|Open this payment in Stripe> *bold* & <@U123>"
NUMBER = "INV-<@U0BOSS>|<!here>"
EMAIL = "<!channel>@evil.example"
#: paybot's own mentions, the only Slack markup allowed to stay live.
OURS = ("<@U0FIN1>", "<@U0ONCALL>", "<!subteam^S0ONCALL>")
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e]")


@pytest.fixture
def configs(configs):  # type: ignore[no-untyped-def]
    """Without a Stripe API key: a refund is matched to its payment by the PaymentIntent alone."""
    from bot.integrations.sources.stripe import StripeSettings

    return configs | {"stripe": StripeSettings(_env_file=None, webhook_secret=STRIPE_SECRET)}


def mrkdwn_of(message: dict[str, Any]) -> list[str]:
    """What Slack parses for markup in a message or a view: its `text` and every mrkdwn text object."""
    found = [message["text"]] if isinstance(message.get("text"), str) else []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message.get("blocks"))
    return found


def live_markup(texts: list[str]) -> list[str]:
    """Slack markup (`<…>`) left in these texts other than paybot's own mentions."""
    left = []
    for text in texts:
        for ours in OURS:
            text = text.replace(ours, "")
        left += re.findall(r"<[^>]*>?", text)
    return left


async def scenario(staff: SlackStaff, sendgrid: Any) -> dict[str, Any]:
    """Every surface the hostile values reach, produced the way production produces it."""
    bot, slack = staff.bot, staff.slack
    await bot.add_customer(name=HOSTILE, channels=("email", "slack"), slack_channel="C0SHARED")
    await bot.add_invoice(NUMBER, "1250.00")
    sendgrid.script("/v3/mail/send", errors(400, "Does not contain a valid address.", "to"))
    await bot.post_stripe(stripe_invoice_event(number=NUMBER, customer_name=HOSTILE, payment_intent="pi_3QabcPART0001"))
    await bot.post_stripe(stripe_invoice_event("evt_stray", number="INV-9999", email=EMAIL, customer_name=HOSTILE))
    await bot.post_stripe(stripe_invoice_event("evt_anon", number="INV-9998", email="", customer_name=HOSTILE))
    await bot.post_stripe(load("stripe", "charge_refunded.json"))
    for _ in range(6):  # one Slack message per second per channel
        await bot.deliver()
        bot.clock.advance(1)
    finance = {m["text"].split(" ", 1)[0] + str(i): m for i, m in enumerate(slack.posted("C0FINANCE"))}
    card = next(m for m in finance.values() if m["text"].startswith("Payment received"))
    review = next(m for m in finance.values() if m["text"].startswith("Unmatched") and "@evil" in m["text"])
    anonymous = next(m for m in finance.values() if m["text"].startswith("Unmatched") and m is not review)

    await staff.click(card, "payment_escalate")
    await staff.click(review, "payment_match")
    await staff.command(f"escalate p2 {HOSTILE}")
    for command in ("find evil.example", "unmatched", f"status {NUMBER}", "resend p1 email"):
        await staff.command(command)
    for _ in range(3):
        await bot.deliver()
        bot.clock.advance(1)
    replies = dict(zip(["match-escalate", "escalate", "find", "unmatched", "status", "resend"], slack.replies(),
                       strict=False))
    [mail] = sendgrid.accepted
    return {"finance": finance, "card": staff.card(index=0), "review": review, "anonymous": anonymous,
            "replies": replies, "modal": slack.views[-1], "mail": mail, "shared": slack.posted("C0SHARED"),
            "escalations": slack.posted("C0ESCALATE")}


def finance_message(starts: str) -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    return lambda s: [m for m in s["finance"].values() if m["text"].startswith(starts)]


#: surface → the Slack messages (or views) it produced
SLACK_SURFACES: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
    "finance card (blocks and text), after staff acted on it": lambda s: [s["card"]],
    "needs-review card (payer email)": lambda s: [s["review"]],
    "needs-review card (payer name)": lambda s: [s["anonymous"]],
    "reversal card": finance_message("A refund"),
    "dead-letter alert": finance_message("Could not deliver"),
    "escalation (button and command, with a hostile note)": lambda s: s["escalations"],
    "match modal": lambda s: [s["modal"]],
    "/payments find": lambda s: [{"text": s["replies"]["find"]}],
    "/payments unmatched": lambda s: [{"text": s["replies"]["unmatched"]}],
    "/payments status": lambda s: [{"text": s["replies"]["status"]}],
    "/payments resend": lambda s: [{"text": s["replies"]["resend"]}],
    "customer's shared channel": lambda s: s["shared"],
}


async def test_hostile_names_emails_and_numbers_stay_text_on_every_surface(staff, sendgrid):
    surfaces = await scenario(staff, sendgrid)
    problems = []
    for name, messages_of in SLACK_SURFACES.items():
        texts = [t for m in messages_of(surfaces) for t in mrkdwn_of(m)]
        if not any("&lt;" in t for t in texts):  # the hostile value must have reached the surface, escaped
            problems.append(f"{name}: no hostile value shown in {texts}")
        if live := live_markup(texts):
            problems.append(f"{name}: live markup {live}")
    mail = surfaces["mail"]
    html = next(c["value"] for c in mail["content"] if c["type"] == "text/html")
    if "&lt;!channel&gt; &lt;https://evil.example|Open" not in html or re.search(r"<(?!/?(p|strong|table|tr|td)\b)", html):
        problems.append(f"customer email HTML: {html}")
    if HOSTILE not in mail_text(mail) or CONTROL.search(mail_text(mail)):  # plain text: shown as it is, inert
        problems.append(f"customer email text: {mail_text(mail)!r}")
    subject = mail["personalizations"][0].get("subject") or mail["subject"]
    if NUMBER not in subject or CONTROL.search(subject) or "\n" in subject:
        problems.append(f"customer email subject: {subject!r}")
    assert not problems, "\n".join(problems)
