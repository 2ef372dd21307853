"""SMS encodings and segments (GSM 03.38 vs UCS-2), as carriers and Twilio count them.

A message of GSM-7 characters only takes 160 characters in one segment, 153 per segment once split; a single
character outside that alphabet (an emoji, `á`, a curly quote, a narrow no-break space) makes the whole message
UCS-2: 70 UTF-16 units in one segment, 67 per segment once split. Pure functions, no I/O.
"""

from __future__ import annotations

import math
import unicodedata

#: GSM 03.38 basic character set (one septet each) and its extension table (escape + one septet: two).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà")
GSM_EXTENDED = frozenset("^{}\\[~]|€\f")
#: Look-alikes written the GSM way (what Twilio's Smart Encoding does for punctuation); accents not in GSM-7 are
#: dropped by `gsm_friendly`, letters with no GSM form are left (the message then stays UCS-2).
_REPLACEMENTS = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u201c": '"', "\u201d": '"',
    "\u201e": '"', "\u2033": '"', "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2026": "...", "\u00a0": " ",
    "\u202f": " ", "\u2009": " ", "\u2002": " ", "\u2003": " ", "\t": " ", "\u00ab": '"', "\u00bb": '"',
}


def is_gsm(text: str) -> bool:
    return all(c in GSM_BASIC or c in GSM_EXTENDED for c in text)


def units(text: str) -> int:
    """What the text costs in its encoding: septets for GSM-7, UTF-16 code units for UCS-2."""
    if is_gsm(text):
        return sum(2 if c in GSM_EXTENDED else 1 for c in text)
    return len(text.encode("utf-16-le")) // 2


def segments(text: str) -> int:
    single, multi = (160, 153) if is_gsm(text) else (70, 67)
    cost = units(text)
    return 1 if cost <= single else math.ceil(cost / multi)


def encoding(text: str) -> str:
    return "GSM-7" if is_gsm(text) else "UCS-2"


def gsm_friendly(text: str) -> str:
    """The text with look-alike punctuation and accents outside GSM-7 written the GSM way (`á` → `a`, `’` → `'`),
    keeping GSM's own accented letters (`é`, `ñ`, `ü`, `¡`, `¿`)."""
    out = []
    for char in text:
        char = _REPLACEMENTS.get(char, char)
        if len(char) == 1 and char not in GSM_BASIC and char not in GSM_EXTENDED:
            base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
            char = base if base and is_gsm(base) else char
        out.append(char)
    return "".join(out)


def fit(text: str, max_segments: int) -> str | None:
    """The text as it is, or else written GSM-friendly, if either fits in `max_segments`; None if neither does."""
    for candidate in (text, gsm_friendly(text)):
        if segments(candidate) <= max_segments:
            return candidate
    return None


def cut(text: str, max_segments: int, ellipsis: str = "...") -> str:
    """The GSM-friendly text cut (at a word where it can be) so that it fits in `max_segments`."""
    text = gsm_friendly(text)
    while segments(text) > max_segments:
        head = text[: max(len(text) - max(len(text) // 20, 1) - len(ellipsis), 0)].rstrip()
        word = head.rsplit(" ", 1)[0] if " " in head[-30:] else head
        text = word.rstrip(" ,.;:") + ellipsis
        if not word:
            return ellipsis
    return text
