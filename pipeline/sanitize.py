"""Text cleaning for Plex: NFC, no control or invisible format characters, ASCII quotes, tidy whitespace,
and length limits that cut at a word boundary."""

from __future__ import annotations

import datetime
import re
import unicodedata

TITLE_LIMIT = 255
STUDIO_LIMIT = 255
TAGLINE_LIMIT = 255
SUMMARY_LIMIT = 10_000
TAG_LIMIT = 255
MAX_ACTORS = 50
MAX_COLLECTIONS = 20

ELLIPSIS = "..."
_KEEP_FORMAT = {"\u200d"}  # zero-width joiner: part of emoji sequences such as family or flag emoji
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
                         "\u2013": "-", "\u2014": "-", "\u2026": "..."})
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _strip_invisible(text: str, keep_newlines: bool) -> str:
    out: list[str] = []
    for char in text:
        category = unicodedata.category(char)
        if char == "\n" and keep_newlines:
            out.append(char)
        elif char in "\t\r\n\v\f" or category == "Zs":
            out.append(" ")
        elif category in ("Cc", "Cs", "Co", "Cn") or (category == "Cf" and char not in _KEEP_FORMAT):
            continue
        else:
            out.append(char)
    return "".join(out)


def clean_text(value: str | None, limit: int, *, multiline: bool = False) -> str:
    """The cleaned text, at most `limit` characters; '' for None or only-invisible input."""
    if not value:
        return ""
    text = unicodedata.normalize("NFC", value).translate(_QUOTES)
    text = _strip_invisible(text.replace("\r\n", "\n"), keep_newlines=multiline)
    if multiline:
        lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
        text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    else:
        text = _SPACES.sub(" ", text).strip()
    return truncate(text, limit)


def truncate(text: str, limit: int) -> str:
    """Cut to `limit` characters at the last word boundary, marking the cut with '...'."""
    if len(text) <= limit:
        return text
    room = limit - len(ELLIPSIS)
    if room <= 0:
        return text[:limit]
    cut = text[:room]
    boundary = max(cut.rfind(" "), cut.rfind("\n"))
    if boundary >= room // 2:  # a word boundary not too far back; else cut inside the long word
        cut = cut[:boundary]
    return cut.rstrip() + ELLIPSIS


def clean_names(values: list[str], limit: int, max_items: int) -> list[str]:
    """Cleaned, de-duplicated (case-insensitively, first spelling wins), empty ones dropped, capped."""
    seen: set[str] = set()
    names: list[str] = []
    for value in values:
        name = clean_text(value, limit)
        key = name.casefold()
        if name and key not in seen:
            seen.add(key)
            names.append(name)
        if len(names) >= max_items:
            break
    return names


def clean_date(value: str | None) -> str | None:
    """`YYYY-MM-DD` if it is a real date, else None (a malformed date is skipped, not sent)."""
    if not value or not _DATE.match(value.strip()):
        return None
    year, month, day = (int(part) for part in value.strip().split("-"))
    try:
        datetime.date(year, month, day)
    except ValueError:
        return None
    return value.strip()
