"""Clean extracted text for search and prompts, changing nothing else.

Typographic ligatures (U+FB00-FB06, as PDFs set "misﬁts") become their letters, soft
hyphens (U+00AD) go, and for laid-out text (PDF, OCR) a word split by a hyphen at a
line end is joined when both halves are lower case ("infor-\\nmation" -> "information";
"Jean-\\nPaul" and "2019-\\n2020" stay). No NFKC of the whole text: it would also turn
superscripts, full-width letters and the like into something else.
"""
from __future__ import annotations

import re

# The Latin presentation forms (U+FB00-FB06), expanded as NFKC does, and the soft hyphen.
_TABLE = {0xFB00: "ff", 0xFB01: "fi", 0xFB02: "fl", 0xFB03: "ffi", 0xFB04: "ffl", 0xFB05: "st", 0xFB06: "st",
          0x00AD: None}
_NEEDS_TABLE = re.compile("[\u00ad\ufb00-\ufb06]")
_SOFT_BREAK = re.compile("\u00ad[ \t]*\r?\n[ \t]*")  # a soft hyphen is a break the author allowed
# letters, a hyphen (ASCII or U+2010), spaces, a line end, spaces; the next word is looked at, not consumed
_LINE_END_HYPHEN = re.compile(r"([^\W\d_]+)[-\u2010][ \t]*\r?\n[ \t]*(?=([^\W\d_]+))")


def _join(match: re.Match[str]) -> str:
    head, tail = match.group(1), match.group(2)
    return head if head.islower() and tail.islower() else match.group(0)


def clean_text(text: str, join_hyphens: bool = False) -> str:
    """``join_hyphens``: the text has the line ends of a layout (PDF, OCR), not of its author."""
    if join_hyphens and "\u00ad" in text:
        text = _SOFT_BREAK.sub("", text)
    if _NEEDS_TABLE.search(text):
        text = text.translate(_TABLE)
    if join_hyphens and "\n" in text:
        text = _LINE_END_HYPHEN.sub(_join, text)
    return text
