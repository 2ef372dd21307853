"""Log records made safe to write: control characters escaped, customer emails and phone numbers redacted.

Every record passes `SafeRecords`, whichever logger made it (ours or a library's), because the filter sits on the
handlers: `paybot` installs it on the root logger's handlers (`bot.cli.configure_logging`), the tests on pytest's
capture. A payer's name or a header holding `\\n2026-… INFO forged line` is then written as one escaped line.
Library loggers that would write request bodies at DEBUG are held at INFO or above whatever `LOG_LEVEL` says.
"""

from __future__ import annotations

import logging
import re

#: C0 and C1 controls, DEL, Unicode line and paragraph separators, and lone surrogates (unwritable as UTF-8).
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
EMAIL = re.compile(r"(?<![\w.%+-])([\w%+-])[\w.%+-]*@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})")
E164 = re.compile(r"(?<![\w+])\+\d{7,15}(?!\d)")

#: Libraries whose DEBUG (or, for SQLAlchemy, INFO) output carries requests, bodies or bound parameters.
LIBRARY_FLOORS = {
    "aiohttp.access": logging.WARNING, "alembic": logging.WARNING, "sqlalchemy": logging.WARNING,
    "aiohttp.client": logging.INFO, "aiohttp.server": logging.INFO, "aiohttp.web": logging.INFO,
    "asyncio": logging.INFO, "urllib3": logging.INFO, "sendgrid": logging.INFO, "python_http_client": logging.INFO,
    "slack_sdk": logging.INFO, "slack_bolt": logging.INFO, "asyncpg": logging.INFO, "aiosqlite": logging.INFO,
    "twilio": logging.WARNING,  # its INFO lines are every request's URL, query (phone numbers) and headers
}


def escape(text: str) -> str:
    """`text` on one line: each control character as its Python escape (`\\n`, `\\x00`, `\\u2028`)."""
    return CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def redact(text: str) -> str:
    """Emails as `j***@example.com`, E.164 numbers as `+12*******23` (as `bot.services.notify.redact` shows them)."""
    text = EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return E164.sub(lambda m: m.group()[:3] + "*" * (len(m.group()) - 5) + m.group()[-2:], text)


def block(text: str) -> str:
    """A traceback or stack, several lines by nature: each redacted and escaped, and indented, so that no line
    of it (an exception message included) can pass for a record of its own."""
    return "\n".join("  " + escape(redact(line)) for line in text.split("\n"))


class SafeRecords(logging.Filter):
    """Rewrites each record once: its message redacted and escaped, its traceback as a safe `block`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "paybot_safe", False):
            return True
        record.msg, record.args = escape(redact(record.getMessage())), None
        if record.exc_info and not record.exc_text:
            record.exc_text = block(logging.Formatter().formatException(record.exc_info).rstrip("\n"))
        if record.stack_info:
            record.stack_info = block(record.stack_info)
        record.paybot_safe = True
        return True


def make_safe(handler: logging.Handler) -> None:
    if not any(isinstance(f, SafeRecords) for f in handler.filters):
        handler.addFilter(SafeRecords())


def hold_libraries(level: int) -> None:
    """Library loggers no chattier than their floor, even under `LOG_LEVEL=DEBUG`."""
    for name, floor in LIBRARY_FLOORS.items():
        logging.getLogger(name).setLevel(max(level, floor))
