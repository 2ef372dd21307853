"""Block Kit messages. Finance cards carry staff buttons whose `value` is the payment id; customer messages
carry none, and nothing about any other customer."""

from __future__ import annotations

from typing import Any

from cards import ids

Block = dict[str, Any]


def escape(data: dict[str, Any]) -> dict[str, Any]:
    """Slack's three control characters, escaped in every text value (a customer named `<!channel>` stays text)."""
    return {k: v.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") if isinstance(v, str) else v
            for k, v in data.items()}


def _text(kind: str, text: str) -> Block:
    return {"type": kind, "text": text}


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


def payment_confirmation(data: dict[str, Any]) -> list[Block]:
    """Finance channel: a matched payment, with Resend / Edit / Escalate."""
    data = escape(data)
    pid = str(data["payment_id"])
    status = "Partially paid" if data["partial"] else "Overpaid" if data["overpaid"] else "Paid in full"
    return [
        _section(f":white_check_mark: *Payment received* — {data['amount']} from *{data['customer_name']}*"),
        _fields([("Invoice", data["invoice_number"]), ("Status", status), ("Balance left", data["balance"]),
                 ("Source", data["source"]), ("Received", data["paid_at"]), ("Matched by", data["match_reason"])]),
        {"type": "actions", "block_id": f"payment_{pid}", "elements": [
            _button(ids.RESEND, "Resend", pid),
            _button(ids.EDIT, "Edit", pid),
            _button(ids.ESCALATE, "Escalate", pid, "danger"),
        ]},
        _context(f"Payment #{pid}"),
    ]


def needs_review(data: dict[str, Any]) -> list[Block]:
    """Finance channel: a payment we could not match; no customer was told."""
    data = escape(data)
    pid = str(data["payment_id"])
    return [
        _section(f":mag: *Payment needs review* — {data['amount']} via {data['source']}"),
        _fields([("Payer", data["payer_email"] or data["customer_name"]), ("Why", data["match_reason"]),
                 ("Received", data["paid_at"])]),
        {"type": "actions", "block_id": f"payment_{pid}", "elements": [
            _button(ids.MATCH, "Match to invoice…", pid, "primary"),
            _button(ids.ESCALATE, "Escalate", pid, "danger"),
        ]},
        _context(f"Payment #{pid} · no customer message was sent"),
    ]


def reversal(data: dict[str, Any]) -> list[Block]:
    data = escape(data)
    pid = str(data["payment_id"])
    return [
        _section(f":warning: *Payment {data['kind']}* — {data['amount']} via {data['source']}"),
        _fields([("Invoice", data["invoice_number"] or "—"), ("Customer", data["customer_name"]),
                 ("Recorded", data["paid_at"])]),
        {"type": "actions", "block_id": f"payment_{pid}", "elements": [_button(ids.ESCALATE, "Escalate", pid, "danger")]},
        _context(f"Payment #{pid} · no customer message was sent"),
    ]


def dead_letter(data: dict[str, Any]) -> list[Block]:
    data = escape(data)
    pid = str(data["payment_id"])
    return [
        _section(f":rotating_light: *Could not deliver* the {data['note']}"),
        _fields([("Invoice", data["invoice_number"] or "—"), ("Customer", data["customer_name"]),
                 ("Amount", data["amount"])]),
        {"type": "actions", "block_id": f"payment_{pid}", "elements": [
            _button(ids.RESEND, "Resend", pid), _button(ids.ESCALATE, "Escalate", pid, "danger")]},
    ]


def customer_receipt(text: str) -> list[Block]:
    """A customer's shared channel: the thank-you text only."""
    return [_section(":white_check_mark: " + escape({"t": text})["t"])]


FINANCE_CARDS = {
    "finance_card": payment_confirmation,
    "needs_review": needs_review,
    "reversal": reversal,
    "dead_letter": dead_letter,
}
