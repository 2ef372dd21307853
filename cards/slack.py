"""Block Kit messages. Finance cards carry staff buttons whose `value` is the payment id; customer messages
carry none, and nothing about any other customer."""

from __future__ import annotations

from typing import Any

from bot import text
from bot.text import Mrkdwn
from cards import ids

Block = dict[str, Any]


def escape(data: dict[str, Any]) -> dict[str, Any]:
    """Every text value escaped for Slack (`bot/text.py`): a customer named `<!channel>` stays text."""
    return {k: text.slack(v) if isinstance(v, str) else v for k, v in data.items()}


def _text(kind: str, value: str) -> Block:
    return {"type": kind, "text": text.plain(value) if kind == "plain_text" else value}


def _section(markdown: str) -> Block:
    return {"type": "section", "text": _text("mrkdwn", markdown)}


def _fields(pairs: list[tuple[str, str]]) -> Block:
    return {"type": "section", "fields": [_text("mrkdwn", f"*{k}*\n{v}") for k, v in pairs if v]}


def _button(action_id: str, label: str, value: str, style: str | None = None) -> Block:
    button: Block = {"type": "button", "action_id": action_id, "text": _text("plain_text", label), "value": value}
    if style:
        button["style"] = style
    return button


def _context(text: str) -> Block:
    return {"type": "context", "elements": [_text("mrkdwn", text)]}


def _actions(pid: str, buttons: list[Block]) -> list[Block]:
    """The staff buttons, if chat-ops can answer them (an empty list otherwise: a button nobody answers is a lie)."""
    return [{"type": "actions", "block_id": f"payment_{pid}", "elements": buttons}] if buttons else []


def payment_confirmation(data: dict[str, Any], *, buttons: bool = True) -> list[Block]:
    """Finance channel: a matched payment, with Resend / Edit / Escalate; and whether the customer was told."""
    data = escape(data)
    pid = str(data["payment_id"])
    status = "Partially paid" if data["partial"] else "Overpaid" if data["overpaid"] else "Paid in full"
    owing = ("Overpaid by", data["credit"]) if data["overpaid"] else ("Balance left", data["balance"])
    unreachable = data.get("unreachable")
    warning = [_section(f":warning: *{data['customer_name']} was NOT told* about this payment: {unreachable}")] \
        if unreachable else []
    return [
        _section(f":white_check_mark: *Payment received* — {data['amount']} from *{data['customer_name']}*"),
        *warning,
        _fields([("Invoice", data["invoice_number"]), ("Status", status), owing,
                 ("Source", data["source"]), ("Received", data["paid_at"]), ("Matched by", data["match_reason"])]),
        *_actions(pid, [_button(ids.RESEND, "Resend", pid), _button(ids.EDIT, "Edit", pid),
                        _button(ids.ESCALATE, "Escalate", pid, "danger")] if buttons else []),
        _context(f"Payment #{pid}" + (" · the customer was not told" if unreachable else "")),
    ]


def needs_review(data: dict[str, Any], *, buttons: bool = True) -> list[Block]:
    """Finance channel: a payment we could not match, with what the payer gave us to go on; no customer was told."""
    data = escape(data)
    pid = str(data["payment_id"])
    name, email = data.get("payer_name"), data.get("payer_email")
    payer = f"{name} ({email})" if name and email else name or email or data["customer_name"]
    return [
        _section(f":mag: *Payment needs review* — {data['amount']} via {data['source']}"),
        _fields([("Payer", payer), ("They quoted", data.get("quoted") or ""),
                 (f"{data['source']} payment id", data.get("payment_ref") or ""), ("Why", data["match_reason"]),
                 ("Received", data["paid_at"])]),
        *_actions(pid, [_button(ids.MATCH, "Match to invoice…", pid, "primary"),
                        _button(ids.ESCALATE, "Escalate", pid, "danger")] if buttons else []),
        _context(f"Payment #{pid} · no customer message was sent"),
    ]


def reversal(data: dict[str, Any], *, buttons: bool = True) -> list[Block]:
    data = escape(data)
    pid = str(data["payment_id"])
    return [
        _section(f":warning: *Payment {data['kind']}* — {data['amount']} via {data['source']}"),
        _fields([("Invoice", data["invoice_number"] or "—"), ("Customer", data["customer_name"]),
                 ("Recorded", data["paid_at"])]),
        *_actions(pid, [_button(ids.ESCALATE, "Escalate", pid, "danger")] if buttons else []),
        _context(f"Payment #{pid} · no customer message was sent"),
    ]


def dead_letter(data: dict[str, Any], *, buttons: bool = True) -> list[Block]:
    data = escape(data)
    pid = str(data["payment_id"])
    return [
        _section(f":rotating_light: *Could not deliver* the {data['note']}"),
        _fields([("Invoice", data["invoice_number"] or "—"), ("Customer", data["customer_name"]),
                 ("Amount", data["amount"])]),
        *_actions(pid, [_button(ids.RESEND, "Resend", pid), _button(ids.ESCALATE, "Escalate", pid, "danger")]
                  if buttons else []),
    ]


def customer_receipt(words: Mrkdwn) -> list[Block]:
    """A customer's shared channel: the thank-you text only (rendered for Slack, so already escaped)."""
    return [_section(text.mrkdwn(":white_check_mark: {}", words))]


FINANCE_CARDS = {
    "finance_card": payment_confirmation,
    "needs_review": needs_review,
    "reversal": reversal,
    "dead_letter": dead_letter,
}


def button_target(value: str) -> tuple[int, int]:
    """A staff button's value: the payment id, and the card's revision (`"42"` or `"42:3"`)."""
    pid, _, revision = value.partition(":")
    return int(pid), int(revision or 0)


def mention(user_ids: list[str], group: str | None) -> Mrkdwn:
    """Slack mention syntax for users (`<@U…>`) and a user group (`<!subteam^S…>`); ids are alphanumeric."""
    parts = [text.mention(u) for u in user_ids if u.isalnum()]
    if group and group.isalnum():
        parts.append(text.usergroup_mention(group))
    return Mrkdwn(" ").join(parts)


def with_activity(blocks: list[Block], lines: list[Mrkdwn], revision: int) -> list[Block]:
    """The card after staff acted on it: what was done (newest last) and buttons carrying the new revision, so a
    click on the card as it was before is recognised as a double click."""
    updated: list[Block] = []
    for block in blocks:
        if block.get("block_id") == ids.ACTIVITY_BLOCK:
            continue
        if block.get("type") == "actions":
            block = block | {"elements": [
                e | {"value": f"{button_target(e['value'])[0]}:{revision}"} if e.get("action_id") in ids.STAFF_ACTIONS
                else e for e in block["elements"]]}
        updated.append(block)
    if lines:
        updated.append({"type": "context", "block_id": ids.ACTIVITY_BLOCK,
                        "elements": [_text("mrkdwn", text.lines(lines[-8:]))]})
    return updated


def activity_line(user_id: str, summary: str, at: str) -> Mrkdwn:
    return text.mrkdwn("{} {} · {}", text.mention(user_id), summary, at)


def escalation(data: dict[str, Any], *, escalation_id: int, mention: Mrkdwn, escalated_by: str,
               round_: int) -> list[Block]:
    """The escalation channel: a payment handed to the on-call person, with Acknowledge."""
    data = escape(data)
    again = f" (reminder {round_ - 1}: nobody has acknowledged it yet)" if round_ > 1 else ""
    return [
        _section(text.mrkdwn(":rotating_light: {} *Payment escalated* by {}{}", mention, text.mention(escalated_by),
                             again)),
        _fields([("Amount", data["amount"]), ("Invoice", data["invoice_number"] or "—"),
                 ("Customer", data["customer_name"]), ("Source", data["source"]), ("Note", data["note"] or "")]),
        {"type": "actions", "block_id": f"escalation_{escalation_id}", "elements": [
            _button(ids.ACKNOWLEDGE, "Acknowledge", str(escalation_id), "primary")]},
        _context(f"Escalation #{escalation_id} · payment #{data['payment_id']}"),
    ]


def acknowledged(blocks: list[Block], user_id: str, at: str) -> list[Block]:
    """An escalation message once someone took it: the button gives way to who and when."""
    kept = [b for b in blocks if b.get("type") != "actions"]
    return kept + [_context(text.mrkdwn(":white_check_mark: Acknowledged by {} · {}", text.mention(user_id), at))]


def audit_anchor(words: Mrkdwn, anchor: str) -> list[Block]:
    """The finance channel: the audit chain's head, published where the database's writer cannot rewrite it."""
    return [_section(":lock: " + words), _context(f"`paybot audit verify --anchor {text.slack(anchor)}`")]
