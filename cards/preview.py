"""A Block Kit message as a person reads it in Slack, in plain text: for `paybot demo` and previews.

Only what paybot's cards use is drawn: sections (text and fields), actions (buttons in brackets), context lines.
Slack's escapes are undone, since the reader sees the characters, not the entities.
"""

from __future__ import annotations

import re
from typing import Any

EMOJI = {":white_check_mark:": "✅", ":mag:": "🔍", ":warning:": "⚠️", ":rotating_light:": "🚨"}
_BOLD = re.compile(r"\*([^*\n]+)\*")


def plain(mrkdwn: str) -> str:
    """Slack mrkdwn as read: emoji codes drawn, bold unmarked, escapes undone."""
    for code, glyph in EMOJI.items():
        mrkdwn = mrkdwn.replace(code, glyph)
    mrkdwn = _BOLD.sub(r"\1", mrkdwn)
    return mrkdwn.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def as_text(blocks: list[dict[str, Any]], width: int = 38) -> list[str]:
    """The card's lines, top to bottom."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "section" and "text" in block:
            lines += plain(block["text"]["text"]).splitlines()
        if kind == "section" and "fields" in block:
            for item in block["fields"]:
                label, _, value = plain(item["text"]).partition("\n")
                lines.append(f"{(label + ':').ljust(13)} {value}"[:width * 3])
        elif kind == "actions":
            lines.append("  ".join(f"[ {e['text']['text']} ]" for e in block["elements"] if e.get("type") == "button"))
        elif kind == "context":
            lines += [plain(e["text"]) for e in block["elements"] if "text" in e]
    return lines
