"""Where outside text (a payer's name, an invoice number, an email, a staff note) becomes text on a surface.

Every surface has one function here, and nothing else escapes:

    slack(value)      Slack mrkdwn and a message's top-level `text`: `&`, `<`, `>` escaped, so `<!channel>`,
                      `<@U…>`, `<#C…>` and `<https://…|disguise>` stay visible text instead of a ping or a link
    plain(value)      plain text (email text, Slack plain_text): control and bidi-override characters removed
    line(value)       one line of plain text (an email subject): line breaks become spaces too
    teams(value)      Teams markdown (Adaptive Card TextBlock/FactSet, message text): markdown and HTML characters
                      escaped, so `[x](https://evil)`, `**`, `<at>…</at>` stay visible text, never a link or a ping
    csv_cell(value)   a spreadsheet cell: a leading `=`, `+`, `-`, `@`, tab or CR is defused with `'` (OWASP)

HTML is escaped by Jinja's autoescape (`bot/messages.py`), after `plain`.

Slack text paybot composes is a `Mrkdwn`, built only by `mrkdwn(template, …)`, which escapes every value it
fills in unless that value is itself `Mrkdwn` (a mention paybot wrote, a line already built). Replies and
modal headings take `Mrkdwn`, so mypy refuses a raw f-string there; `tests/unit/test_text.py` refuses
`Mrkdwn(…)` outside this module and `mrkdwn()` with a template that is not a literal.

Slack's `*bold*` / `_italic_` characters are left alone: they change how a name looks, never where a click
goes, and altering them would alter names and numbers staff copy from an answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import LiteralString

#: C0/C1 controls (tab and newline kept), zero-width characters and bidi controls (which reorder what is shown,
#: e.g. to disguise a link's or a file's real name).
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_BREAKS = re.compile(r"[\t\n]+")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def plain(value: object) -> str:
    return _INVISIBLE.sub("", str(value))


def line(value: object) -> str:
    return _BREAKS.sub(" ", plain(value)).strip()


def slack(value: object) -> str:
    if isinstance(value, Mrkdwn):
        return str.__str__(value)
    return plain(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def csv_cell(value: object) -> object:
    """A value for a CSV cell a spreadsheet will open: text that a spreadsheet would run as a formula gets a
    leading `'`; numbers (also negative ones, which are not formulas) and non-text values are kept."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START) or _is_number(value):
        return value
    return "'" + value


def _is_number(value: str) -> bool:
    try:
        return Decimal(value).is_finite() and value.strip() == value and "e" not in value.lower()
    except InvalidOperation:
        return False


class Mrkdwn(str):
    """Slack text that is safe to send: paybot's own markup, every outside value in it escaped."""

    __slots__ = ()

    def join(self, parts: Iterable[str]) -> Mrkdwn:
        return Mrkdwn(str.join(self, (slack(p) for p in parts)))

    def __add__(self, other: str) -> Mrkdwn:
        return Mrkdwn(str.__add__(self, slack(other)))


def mrkdwn(template: LiteralString, /, *args: object, **values: object) -> Mrkdwn:
    """`template.format(…)` with every argument escaped for Slack (a `Mrkdwn` argument is kept as it is)."""
    return Mrkdwn(template.format(*(slack(a) for a in args), **{k: slack(v) for k, v in values.items()}))


def lines(parts: Iterable[Mrkdwn | str]) -> Mrkdwn:
    """Lines, one under the other; a plain `str` line is escaped."""
    return Mrkdwn("\n").join(parts)


def mention(user_id: str) -> Mrkdwn:
    """`<@U…>`, a live mention of a Slack user id (alphanumeric; anything else is shown as text)."""
    return Mrkdwn(f"<@{user_id}>") if user_id.isalnum() else mrkdwn("{}", user_id)


def usergroup_mention(group_id: str) -> Mrkdwn:
    """`<!subteam^S…>`, a live mention of a Slack user group id (alphanumeric; anything else is shown as text)."""
    return Mrkdwn(f"<!subteam^{group_id}>") if group_id.isalnum() else mrkdwn("{}", group_id)


#: What Teams markdown reads as markup anywhere (emphasis, links, code), and at a line's start (headings, lists).
_TEAMS_MARKUP = re.compile(r"([\\`*_\[\]~])")
_TEAMS_LINE_START = re.compile(r"^(\s*\d*)([#+\-]|(?<=\d)\.)", re.MULTILINE)


def teams(value: object) -> str:
    """Outside text for Teams: backslash before markdown characters, `&`, `<`, `>` as entities."""
    escaped = plain(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _TEAMS_LINE_START.sub(r"\1\\\2", _TEAMS_MARKUP.sub(r"\\\1", escaped))


def teams_from_mrkdwn(value: Mrkdwn) -> str:
    """A staff answer written for Slack (`*bold*`, `` `code` ``, escaped values), as Teams markdown: bold doubled,
    and `[`/`]` escaped (Slack has no `[text](url)` links, Teams does: a name holding one must stay text)."""
    text = str.__str__(value).replace("[", "\\[").replace("]", "\\]")
    return re.sub(r"(?<![*\w])\*([^*\n]+)\*(?![*\w])", r"**\1**", text)
