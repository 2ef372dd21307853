"""Staff commands from a shell, for shops without Slack chat-ops (or when Slack is the problem): the same services
as `/payments status` and `/payments resend`, acting as `cli:<login>` in the audit trail."""

from __future__ import annotations

import argparse
import getpass
from uuid import uuid4

from bot.errors import ConfigError
from bot.services.staff.actions import StaffDesk
from bot.services.staff.queries import StaffQueries
from bot.services.staff.targets import Request, StaffError, claim
from bot.settings import Settings
from cards.preview import plain


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name in a bare container
        return "cli:operator"


async def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from bot.runtime import start

    runtime = await start(settings, migrate_sqlite=False)
    try:
        print(plain(await StaffQueries(runtime.db).status(args.invoice)))
    except StaffError as exc:
        raise ConfigError(plain(str(exc))) from exc
    finally:
        await runtime.close()
    return 0


async def cmd_resend(settings: Settings, args: argparse.Namespace) -> int:
    """Queue the message again; the running paybot's worker sends it (or the next `paybot serve` / `worker`)."""
    from bot.runtime import start

    runtime = await start(settings, migrate_sqlite=False)
    try:
        request = Request(key=f"cli:{uuid4().hex}", actor=actor(), action="resend")
        claim_id = await claim(runtime.db, request)
        assert claim_id is not None  # a fresh key is never taken
        done = await StaffDesk(runtime.db, runtime.notifier).resend(request, claim_id, args.name, args.channel)
    except StaffError as exc:
        raise ConfigError(plain(str(exc))) from exc
    finally:
        await runtime.close()
    print(plain(done.text) + " A running `paybot serve` or `paybot worker` sends it.")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser("status", help="an invoice's payments and messages, with their delivery state")
    status.add_argument("invoice")
    status.set_defaults(run=cmd_status)
    resend = commands.add_parser("resend", help="queue a customer message again (e.g. after a dead letter)")
    resend.add_argument("name", help="an invoice number (its latest payment's receipt) or n<id> (that message)")
    resend.add_argument("--channel", help="another of the customer's channels: email, sms, slack, … or a provider")
    resend.set_defaults(run=cmd_resend)
