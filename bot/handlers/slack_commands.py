"""`/payments <subcommand> …` (Slack) and `payments …` (Teams): what each subcommand takes, the help staff see,
and the answers every front end gives alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.services.staff.actions import StaffDesk
from bot.services.staff.escalations import Escalations
from bot.services.staff.queries import StaffQueries
from bot.services.staff.targets import Request
from bot.text import Mrkdwn, mrkdwn

#: Escaped like any other text, so `<invoice>` is shown, not taken for a link.
HELP = mrkdwn("{}", """*/payments* — finance chat-ops
• `resend <invoice|n<notification id>> [channel]` — send the customer's receipt again (optionally on another of \
their channels: email, sms, slack…), or exactly that notification again
• `edit <invoice>` — reword the customer's message, then resend it
• `escalate <invoice> [note]` — hand the payment to whoever is on call
• `status <invoice>` — payments, balance, and every notification with its delivery state
• `find <customer|email|amount>` — look up customers, invoices and payments
• `unmatched` — payments waiting to be matched to an invoice
• `audit <invoice>` — the invoice's audit trail
• `help` — this list""")

#: subcommand → (argument names, whether the last argument takes the rest of the line, how many are required)
SUBCOMMANDS: dict[str, tuple[tuple[str, ...], bool, int]] = {
    "resend": (("invoice|n<notification id>", "channel"), False, 1),
    "edit": (("invoice",), False, 1),
    "escalate": (("invoice", "note"), True, 1),
    "status": (("invoice",), False, 1),
    "find": (("customer|email|amount",), True, 1),
    "unmatched": ((), False, 0),
    "audit": (("invoice",), False, 1),
    "help": ((), False, 0),
}


class UsageError(ValueError):
    """A subcommand that does not exist, or arguments that do not fit it; the message says how to use it."""

    def __init__(self, message: Mrkdwn) -> None:
        super().__init__(message)
        self.text = message


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    target: str = ""  # the first argument
    extra: str = ""   # the second (resend's channel) or the rest of the line (escalate's note)


def usage(name: str) -> Mrkdwn:
    names, _, required = SUBCOMMANDS[name]
    shown = [f"<{n}>" if i < required else f"[{n}]" for i, n in enumerate(names)]
    return mrkdwn("Usage: `/payments {}`", " ".join([name, *shown]))


def parse(text: str) -> Command:
    words = text.split()
    if not words:
        return Command("help")
    name = words[0].lower()
    if name not in SUBCOMMANDS:
        raise UsageError(mrkdwn("I don't know `{}`.\n{}", words[0], HELP))
    names, rest_of_line, required = SUBCOMMANDS[name]
    args = words[1:]
    if len(args) < required:
        raise UsageError(mrkdwn("`{}` needs {}. {}", name, " and ".join(f"<{n}>" for n in names[:required]),
                                usage(name)))
    if rest_of_line and len(names) == 1:
        return Command(name, " ".join(args))
    if rest_of_line:
        return Command(name, args[0] if args else "", " ".join(args[1:]))
    if len(args) > len(names):
        raise UsageError(mrkdwn("`{}` takes at most {} argument{}. {}", name, len(names),
                                "s" if len(names) != 1 else "", usage(name)))
    return Command(name, args[0] if args else "", args[1] if len(args) > 1 else "")


class StaffServices(Protocol):
    desk: StaffDesk
    escalations: Escalations
    queries: StaffQueries


async def answer_text(staff: StaffServices, command: Command, request: Request, claim_id: int) -> Mrkdwn:
    """The text answer of every subcommand but `edit` (each front end opens its own form for that)."""
    match command.name:
        case "help":
            return HELP
        case "resend":
            return (await staff.desk.resend(request, claim_id, command.target, command.extra or None)).text
        case "escalate":
            return await staff.escalations.escalate(request, claim_id, command.target, command.extra)
        case "status":
            return await staff.queries.status(command.target)
        case "find":
            return await staff.queries.find(command.target)
        case "unmatched":
            return await staff.queries.unmatched()
        case "audit":
            return await staff.queries.audit(command.target)
    raise UsageError(mrkdwn("Unknown subcommand `{}`.\n{}", command.name, HELP))
