"""Which language a text is in, from its most common short words: cheap (one pass over
the words, no model) and right for a page of running text, which is all OCR needs to
pick its model among Latin-script languages. A page in another script is told by
tesseract's script detection (OSD, text/ocr.py) instead: ``SCRIPTS`` says which
traineddata read each script OSD names, and which Unicode letters that reading must
mostly be made of for OSD's answer to stand."""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

# ISO 639-2 (tesseract's names) -> frequent function words that are rare in the others.
STOPWORDS: dict[str, frozenset[str]] = {
    "eng": frozenset("the and of to is in that it was for with as on be by this are from at or which".split()),
    "deu": frozenset("der die und das ist nicht mit sich des auf für den dem ein eine zu von sie auch wird "
                     "werden oder wie bei nach".split()),
    "fra": frozenset("le la les et des est une dans que pour pas sur qui par avec au du ce il sont ou mais "
                     "aux cette".split()),
    "spa": frozenset("el la los las y que del en es por con una para como pero sus al lo más está".split()),
    "ita": frozenset("il di che è per una sono con non gli della nel alla anche come più lo le dei".split()),
    "por": frozenset("o os as e que do da em um uma para com não por mais dos das ao pelo são".split()),
    "nld": frozenset("de het een en van is dat op te zijn niet met voor die aan ook als bij door".split()),
}
MIN_WORDS = 5
MIN_HITS = 2
_WORD = re.compile(r"[^\W\d_]+")


def guess_language(text: str, candidates: Iterable[str] | None = None) -> str | None:
    """The candidate whose function words the text uses most; None when too short or no
    candidate has a list or a hit."""
    # One-letter words are left out: runs of letters in codes and numbers ("f195e7") are
    # mostly that, and they would pass for Portuguese "e" or Spanish "y".
    words = Counter(w.lower() for w in _WORD.findall(text[:20000]) if len(w) > 1)
    total = sum(words.values())
    if total < MIN_WORDS:
        return None
    names = [c for c in (candidates if candidates is not None else STOPWORDS) if c in STOPWORDS]
    scores = {name: sum(n for w, n in words.items() if w in STOPWORDS[name]) for name in names}
    best = max(scores, key=lambda name: scores[name], default=None)
    # Running text is a quarter or more function words; a few hits in a list of names is not.
    return best if best is not None and scores[best] >= max(MIN_HITS, 0.1 * total) else None


def main_language(pages: list[dict]) -> str | None:
    """The document's language: the one most of its text (by characters) is in."""
    weight: Counter[str] = Counter()
    for page in pages:
        if page.get("language"):
            weight[page["language"]] += len(page.get("text") or "")
    return weight.most_common(1)[0][0] if weight else None


@dataclass(frozen=True)
class Script:
    languages: tuple[str, ...]  # tesseract traineddata for text in this script
    letters: tuple[str, ...]  # how the Unicode names of its letters start


# OSD's script names (tesseract's osd.traineddata) -> the models that read them.
SCRIPTS: dict[str, Script] = {
    "Cyrillic": Script(("rus", "ukr", "bel", "bul", "mkd", "srp", "kaz"), ("CYRILLIC",)),
    "Greek": Script(("ell", "grc"), ("GREEK",)),
    "Arabic": Script(("ara", "fas", "urd"), ("ARABIC",)),
    "Hebrew": Script(("heb", "yid"), ("HEBREW",)),
    "Han": Script(("chi_sim", "chi_tra"), ("CJK",)),
    "Japanese": Script(("jpn",), ("CJK", "HIRAGANA", "KATAKANA")),
    "Korean": Script(("kor",), ("HANGUL", "CJK")),
    "Hangul": Script(("kor",), ("HANGUL",)),
    "Devanagari": Script(("hin", "mar", "nep", "san"), ("DEVANAGARI",)),
    "Thai": Script(("tha",), ("THAI",)),
}
# A reading with the script's model stands when this share of its letters is in the script.
MIN_SCRIPT_SHARE = 0.6


def script_of(language: str) -> str | None:
    """The non-Latin script a traineddata reads (None: Latin, or not known here)."""
    return next((name for name, script in SCRIPTS.items() if language in script.languages), None)


def reads_other_scripts(languages: Iterable[str]) -> bool:
    """True when any of these languages is in a script the stop words cannot tell."""
    return any(script_of(language) is not None for language in languages)


def language_for_script(script: str | None, candidates: Iterable[str]) -> str | None:
    """The first candidate that reads ``script`` (None when none does, or for Latin)."""
    known = SCRIPTS.get(script or "")
    if known is None:
        return None
    return next((c for c in candidates if c in known.languages), None)


def share_in_script(text: str, script: str) -> float:
    """The share of the text's letters that belong to ``script`` (0.0 without letters)."""
    prefixes = SCRIPTS[script].letters
    letters = [ch for ch in text[:20000] if ch.isalpha()]
    if not letters:
        return 0.0
    inside = sum(1 for ch in letters if unicodedata.name(ch, "").startswith(prefixes))
    return inside / len(letters)
