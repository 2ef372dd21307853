"""Block Kit modals staff open from a card or a command: edit a customer message, match a payment to an invoice.

`private_metadata` carries what the submission needs back (the payment, the card to update), as JSON.
"""

from __future__ import annotations

from typing import Any

from bot import text
from bot.text import Mrkdwn
from cards import ids

View = dict[str, Any]

#: Slack's limits: a static_select holds 100 options of at most 75 characters; a text input 3000 characters.
MAX_OPTIONS = 100
MAX_TEXT = 3000


def _plain(value: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text.plain(value)[:75]}


def _modal(callback_id: str, title: str, submit: str, metadata: str, blocks: list[dict[str, Any]]) -> View:
    return {"type": "modal", "callback_id": callback_id, "title": _plain(title), "submit": _plain(submit),
            "close": _plain("Cancel"), "private_metadata": metadata, "blocks": blocks}


def edit_message(heading: Mrkdwn, draft: str, metadata: str) -> View:
    block_id, action_id = ids.EDIT_TEXT
    return _modal(ids.EDIT_MODAL, "Edit customer message", "Save and resend", metadata, [
        {"type": "section", "text": {"type": "mrkdwn", "text": heading}},
        {"type": "input", "block_id": block_id, "label": _plain("Message to the customer"),
         "element": {"type": "plain_text_input", "action_id": action_id, "multiline": True,
                     "initial_value": text.plain(draft)[:MAX_TEXT], "max_length": MAX_TEXT}},
    ])


def match_payment(heading: Mrkdwn, options: list[tuple[str, str]], metadata: str) -> View:
    """A picker of likely open invoices (value, label) and, for any other, a field for its number."""
    pick_block, pick_action = ids.MATCH_PICK
    number_block, number_action = ids.MATCH_NUMBER
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": heading}}]
    if options:
        blocks.append({"type": "input", "block_id": pick_block, "optional": True, "label": _plain("Open invoice"),
                       "element": {"type": "static_select", "action_id": pick_action,
                                   "placeholder": _plain("Choose an invoice"),
                                   "options": [{"text": _plain(label), "value": value}
                                               for value, label in options[:MAX_OPTIONS]]}})
    blocks.append({"type": "input", "block_id": number_block, "optional": bool(options),
                   "label": _plain("…or its number" if options else "Invoice number"),
                   "element": {"type": "plain_text_input", "action_id": number_action,
                               "placeholder": _plain("e.g. INV-1042")}})
    return _modal(ids.MATCH_MODAL, "Match to invoice", "Match", metadata, blocks)


def submitted(view: dict[str, Any], field: tuple[str, str]) -> str:
    """The value a modal input was submitted with ('' when left empty)."""
    block_id, action_id = field
    state = view.get("state", {}).get("values", {}).get(block_id, {}).get(action_id, {})
    if state.get("type") == "static_select":
        return str((state.get("selected_option") or {}).get("value") or "")
    return str(state.get("value") or "").strip()
