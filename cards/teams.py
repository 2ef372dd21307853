"""Adaptive Cards for Teams, from the same data as `cards/slack.py` (`bot.messages.template_data`).

Finance cards carry `Action.Execute` buttons (Universal Actions: an `adaptiveCard/action` invoke) whose verb is
the Slack button's action id and whose data names the payment and the card's revision, so a click on a card as
it was before someone else's action is recognised. Version 1.5 (Universal Actions in Teams); customer messages,
which carry no action, are 1.4 so older clients (Outlook, mobile) render them too. Every outside value goes
through `bot.text.teams`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot import text
from bot.text import Mrkdwn
from cards import ids

Card = dict[str, Any]
Element = dict[str, Any]

SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
NOTICE_BLOCK = "paybot_notice"  # a line saying why the card is shown again (out of date, cancelled, …)
#: Teams' limit on an Input.Text, and on the choices we offer; the same as the Slack modals'.
MAX_TEXT, MAX_CHOICES = 3000, 100


def escape(data: dict[str, Any]) -> dict[str, Any]:
    return {k: text.teams(v) if isinstance(v, str) else v for k, v in data.items()}


def _card(body: list[Element], actions: list[Element] = (), version: str = "1.5",  # type: ignore[assignment]
          entities: list[dict[str, Any]] | None = None) -> Card:
    card: Card = {"type": "AdaptiveCard", "$schema": SCHEMA, "version": version, "body": body}
    if actions:
        card["actions"] = list(actions)
    card["msteams"] = {"width": "Full"} | ({"entities": entities} if entities else {})
    return card


def _heading(words: str, color: str = "Default") -> Element:
    return {"type": "TextBlock", "text": words, "weight": "Bolder", "size": "Medium", "wrap": True, "color": color}


def _line(words: str, **style: Any) -> Element:
    return {"type": "TextBlock", "text": words, "wrap": True} | style


def _context(words: str, block_id: str | None = None) -> Element:
    line = _line(words, isSubtle=True, size="Small", spacing="Small")
    return line | {"id": block_id} if block_id else line


def _facts(pairs: list[tuple[str, str]]) -> Element:
    return {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in pairs if v]}


def _execute(verb: str, title: str, data: dict[str, Any], style: str | None = None) -> Element:
    action: Element = {"type": "Action.Execute", "verb": verb, "title": title, "data": data}
    if style:
        action["style"] = style
    return action


def _staff(verbs: list[tuple[str, str, str | None]], payment_id: int, revision: int = 0) -> list[Element]:
    return [_execute(verb, title, {"payment_id": payment_id, "revision": revision}, style)
            for verb, title, style in verbs]


RESEND = (ids.RESEND, "Resend", None)
EDIT = (ids.EDIT, "Edit", None)
ESCALATE = (ids.ESCALATE, "Escalate", "destructive")
MATCH = (ids.MATCH, "Match to invoice…", "positive")


def payment_confirmation(data: dict[str, Any], *, buttons: bool = True) -> Card:
    """Finance: a matched payment, with Resend / Edit / Escalate; and whether the customer was told."""
    data = escape(data)
    pid = int(data["payment_id"])
    status = "Partially paid" if data["partial"] else "Overpaid" if data["overpaid"] else "Paid in full"
    owing = ("Overpaid by", data["credit"]) if data["overpaid"] else ("Balance left", data["balance"])
    unreachable = data.get("unreachable")
    warning = [_line(f"⚠️ **{data['customer_name']} was NOT told** about this payment: {unreachable}",
                     color="Attention")] if unreachable else []
    return _card([
        _heading(f"✅ Payment received — {data['amount']} from {data['customer_name']}", "Good"),
        *warning,
        _facts([("Invoice", data["invoice_number"]), ("Status", status), owing, ("Source", data["source"]),
                ("Received", data["paid_at"]), ("Matched by", data["match_reason"])]),
        _context(f"Payment #{pid}" + (" · the customer was not told" if unreachable else "")),
    ], _staff([RESEND, EDIT, ESCALATE], pid) if buttons else [])


def needs_review(data: dict[str, Any], *, buttons: bool = True) -> Card:
    """Finance: a payment we could not match, with what the payer gave us to go on; no customer was told."""
    data = escape(data)
    pid = int(data["payment_id"])
    name, email = data.get("payer_name"), data.get("payer_email")
    payer = f"{name} ({email})" if name and email else name or email or data["customer_name"]
    return _card([
        _heading(f"🔍 Payment needs review — {data['amount']} via {data['source']}", "Warning"),
        _facts([("Payer", payer), ("They quoted", data.get("quoted") or ""),
                (f"{data['source']} payment id", data.get("payment_ref") or ""), ("Why", data["match_reason"]),
                ("Received", data["paid_at"])]),
        _context(f"Payment #{pid} · no customer message was sent"),
    ], _staff([MATCH, ESCALATE], pid) if buttons else [])


def reversal(data: dict[str, Any], *, buttons: bool = True) -> Card:
    data = escape(data)
    pid = int(data["payment_id"])
    return _card([
        _heading(f"⚠️ Payment {data['kind']} — {data['amount']} via {data['source']}", "Attention"),
        _facts([("Invoice", data["invoice_number"] or "—"), ("Customer", data["customer_name"]),
                ("Recorded", data["paid_at"])]),
        _context(f"Payment #{pid} · no customer message was sent"),
    ], _staff([ESCALATE], pid) if buttons else [])


def dead_letter(data: dict[str, Any], *, buttons: bool = True) -> Card:
    data = escape(data)
    pid = int(data["payment_id"])
    return _card([
        _heading(f"🚨 Could not deliver the {data['note']}", "Attention"),
        _facts([("Invoice", data["invoice_number"] or "—"), ("Customer", data["customer_name"]),
                ("Amount", data["amount"])]),
    ], _staff([RESEND, ESCALATE], pid) if buttons else [])


FINANCE_CARDS = {
    "finance_card": payment_confirmation,
    "needs_review": needs_review,
    "reversal": reversal,
    "dead_letter": dead_letter,
}


def customer_receipt(words: str) -> Card:
    """A customer's conversation: the thank-you text only (already escaped by the caller), no actions."""
    return _card([_line(f"✅ {words}")], version="1.4")


def plain_card(words: str) -> Card:
    """A staff answer (already Teams markdown) as a card, for an invoke response that is a message."""
    return _card([_line(words)])


def attachment(card: Card) -> dict[str, Any]:
    return {"contentType": CONTENT_TYPE, "content": card}


def revision_of(data: dict[str, Any]) -> tuple[int, int]:
    """An Action.Execute's data: the payment id and the card's revision."""
    return int(data["payment_id"]), int(data.get("revision") or 0)


def with_activity(card: Card, lines: list[str], revision: int, notice: str | None = None) -> Card:
    """The card after staff acted on it: what was done (newest last), staff actions carrying the new revision (a
    click on the card as it was before is then recognised), and an optional notice on top of the activity."""
    body = [e for e in card.get("body", []) if e.get("id") not in (ids.ACTIVITY_BLOCK, NOTICE_BLOCK)]
    actions = [a | {"data": a["data"] | {"revision": revision}} if a.get("verb") in ids.STAFF_ACTIONS else a
               for a in card.get("actions", [])]
    if lines:
        body.append(_context("\n\n".join(lines[-8:]), ids.ACTIVITY_BLOCK))
    if notice:
        body.append(_line(notice, id=NOTICE_BLOCK, color="Warning", weight="Bolder"))
    updated = card | {"body": body}
    if actions:
        updated["actions"] = actions
    return updated


def activity_line(who: str, summary: str, at: str) -> str:
    return f"{text.teams(who)} {text.teams(summary)} · {at}"


def edit_form(heading: Mrkdwn, draft: str, payment_id: int, revision: int) -> Card:
    """Edit in place: the customer message in a text box, Save and resend / Cancel."""
    data = {"payment_id": payment_id, "revision": revision}
    return _card([
        _heading("Edit customer message"),
        _line(text.teams_from_mrkdwn(heading)),
        {"type": "Input.Text", "id": ids.EDIT_TEXT[1], "label": "Message to the customer", "isMultiline": True,
         "maxLength": MAX_TEXT, "value": text.plain(draft)[:MAX_TEXT], "isRequired": True,
         "errorMessage": "The message cannot be empty."},
    ], [_execute(ids.EDIT_MODAL, "Save and resend", data, "positive"), _execute(ids.CANCEL, "Cancel", data)])


def match_form(heading: Mrkdwn, options: list[tuple[str, str]], payment_id: int, revision: int) -> Card:
    """Match in place: a picker of likely open invoices (value, label) and a field for any other's number."""
    data = {"payment_id": payment_id, "revision": revision}
    body: list[Element] = [_heading("Match to invoice"), _line(text.teams_from_mrkdwn(heading))]
    if options:
        body.append({"type": "Input.ChoiceSet", "id": ids.MATCH_PICK[1], "label": "Open invoice", "style": "compact",
                     "placeholder": "Choose an invoice", "choices": [
                         {"title": text.plain(label)[:75], "value": value} for value, label in options[:MAX_CHOICES]]})
    body.append({"type": "Input.Text", "id": ids.MATCH_NUMBER[1], "placeholder": "e.g. INV-1042",
                 "label": "…or its number" if options else "Invoice number"})
    return _card(body, [_execute(ids.MATCH_MODAL, "Match", data, "positive"), _execute(ids.CANCEL, "Cancel", data)])


def with_problem(form: Card, problem: str) -> Card:
    """A form card shown again with why it could not be saved."""
    body = [e for e in form.get("body", []) if e.get("id") != NOTICE_BLOCK]
    return form | {"body": [*body, _line(f"⚠️ {text.teams(problem)}", id=NOTICE_BLOCK, color="Attention")]}


def mentions(user_ids: list[str], names: Mapping[str, str] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """`<at>` text and the card's msteams entities mentioning AAD object ids (anything else is left out), by their
    display names where known."""
    entities, words = [], []
    for n, user_id in enumerate(u for u in user_ids if _aad_id(u)):
        name = text.teams((names or {}).get(user_id) or f"on call {n + 1}")
        label = f"<at>{name}</at>"
        words.append(label)
        entities.append({"type": "mention", "text": label, "mentioned": {"id": user_id, "name": name}})
    return " ".join(words), entities


def _aad_id(value: str) -> bool:
    return bool(value) and len(value) <= 64 and all(c.isalnum() or c == "-" for c in value)


def escalation(data: dict[str, Any], *, escalation_id: int, oncall: list[str], escalated_by: str,
               round_: int, names: Mapping[str, str] | None = None) -> Card:
    """The escalation conversation: a payment handed to the on-call people (mentioned), with Acknowledge."""
    data = escape(data)
    again = f" (reminder {round_ - 1}: nobody has acknowledged it yet)" if round_ > 1 else ""
    mention, entities = mentions(oncall, names)
    return _card([
        _heading(f"🚨 {mention} Payment escalated by {text.teams(escalated_by)}{again}".replace("🚨  ", "🚨 "),
                 "Attention"),
        _facts([("Amount", data["amount"]), ("Invoice", data["invoice_number"] or "—"),
                ("Customer", data["customer_name"]), ("Source", data["source"]), ("Note", data["note"] or "")]),
        _context(f"Escalation #{escalation_id} · payment #{data['payment_id']}"),
    ], [_execute(ids.ACKNOWLEDGE, "Acknowledge", {"escalation_id": escalation_id}, "positive")], entities=entities)


def acknowledged(card: Card, who: str, at: str) -> Card:
    """An escalation once someone took it: the button gives way to who and when."""
    body = [*card.get("body", []), _context(f"✅ Acknowledged by {text.teams(who)} · {at}")]
    return {k: v for k, v in card.items() if k != "actions"} | {"body": body}


