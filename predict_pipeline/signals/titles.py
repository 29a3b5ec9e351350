"""Titles as the matcher reads them (`normalise_title`).

NFKC, case-folded, punctuation dropped, numbers made canonical ("250,000" = "250k" = "250000",
"1st" = "1", "6.30%" = "6.3 percent"), comparison phrases made canonical ("more than", "or more",
"at least", "over", "600+" → "above"; "less than", "or fewer", "at most", "under" → "below"),
month and a few other abbreviations expanded, plurals folded, and stop words with no identity
dropped. Numbers, dates, names and comparison words stay.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from decimal import Decimal

_STOP_WORDS = frozenset(
    (
        *("a", "an", "the", "this", "that", "these", "those", "it", "its", "any"),
        *("will", "would", "shall", "should", "can", "could", "might", "must"),
        *("be", "been", "being", "is", "are", "was", "were", "am", "do", "does", "did"),
        *("has", "have", "had", "by", "in", "of", "to", "on", "at", "for", "with", "as"),
        *("from", "into", "and", "or", "nor", "than", "between", "if"),
        *("how", "many", "much", "what", "which", "who", "whom", "whose", "when", "where"),
        "there",
    )
)
_TOKEN_MAP = {
    "jan": "january",
    "feb": "february",
    "mar": "march",
    "apr": "april",
    "jun": "june",
    "jul": "july",
    "aug": "august",
    "sep": "september",
    "sept": "september",
    "oct": "october",
    "nov": "november",
    "dec": "december",
    "over": "above",
    "exceed": "above",
    "exceeds": "above",
    "under": "below",
    "fewer": "less",
    "versus": "vs",
    "v": "vs",
    "usa": "us",
    "pct": "percent",
    "pres": "president",
    "gov": "governor",
    "dems": "democrats",
    "gop": "republicans",
}
_DIRECTION_PAIRS = (("above", "below"), ("before", "after"), ("more", "less"))
_DIRECTION_WORDS = tuple(word for pair in _DIRECTION_PAIRS for word in pair)
_ORDER_WORDS = ("before", "after")


def _phrases() -> dict[str, str]:
    phrases = {
        "at least": "above",
        "at most": "below",
        "united states of america": "us",
        "united states": "us",
        "united kingdom": "uk",
    }
    for word in ("more", "greater", "higher"):
        phrases[f"no {word} than"] = "below"
        phrases[f"{word} than"] = "above"
    for word in ("less", "fewer", "lower"):
        phrases[f"no {word} than"] = "above"
        phrases[f"{word} than"] = "below"
    for word in ("more", "above", "higher", "greater", "over"):
        phrases[f"or {word}"] = "above"
    for word in ("less", "fewer", "below", "lower", "under"):
        phrases[f"or {word}"] = "below"
    return phrases


_PHRASE_MAP = _phrases()
_PHRASE = re.compile(
    r"\b(?:" + "|".join(sorted(map(re.escape, _PHRASE_MAP), key=len, reverse=True)) + r")\b"
)
_MAGNITUDES = {
    "k": 10**3,
    "thousand": 10**3,
    "m": 10**6,
    "mn": 10**6,
    "million": 10**6,
    "b": 10**9,
    "bn": 10**9,
    "billion": 10**9,
    "t": 10**12,
    "tn": 10**12,
    "trillion": 10**12,
}
_NUMBER = r"\d+(?:\.\d+)?"
# A number with what may follow it: a range's second number, then an ordinal ("1st"), a
# magnitude ("250k", "$50-100b", "2 million"; a single letter must touch the number) or "+".
_NUMBER_RUN = re.compile(
    rf"({_NUMBER})(?:\s*-\s*({_NUMBER}))?"
    r"(?:(st|nd|rd|th|k|mn|m|bn|b|tn|t)\b|\s*(thousand|million|billion|trillion)\b|\s*(\+))?"
)
_ORDINALS = frozenset(("st", "nd", "rd", "th"))
_SYMBOLS_MAP = {
    "&": " and ",
    "@": " at ",
    "%": " percent ",
    "≥": " above ",
    "≤": " below ",
    ">": " above ",
    "<": " below ",
    "\u2212": "-",  # the minus sign
    "\u2018": "'",
    "\u2019": "'",
}
_SYMBOLS = str.maketrans(_SYMBOLS_MAP)
_SYMBOL = re.compile("[" + re.escape("".join(_SYMBOLS_MAP)) + "]")
_POSSESSIVE = re.compile(r"(?<=\w)'s\b")
_ACRONYM = re.compile(r"\b[^\W\d_](?:\.[^\W\d_])+\.?(?!\w)")  # u.s. → us, d.c. → dc
_DIGIT = re.compile(r"\d")
_THOUSANDS = re.compile(r"(\d),(?=\d{3}\b)")
_MINUS = re.compile(r"-(?=\d)")
# Punctuation becomes a space, except a decimal point; ASCII titles take a faster path.
_ASCII_PUNCTUATION = bytes.maketrans(
    string.punctuation.replace(".", "").encode(), b" " * (len(string.punctuation) - 1)
)
_PUNCTUATION = re.compile(r"[^\w.]|_")
_STRAY_DOT = re.compile(r"(?<!\d)\.|\.(?!\d)")
_PURE_NUMBER = re.compile(_NUMBER)
_SLUG_SEPARATOR = re.compile(r"[\W_]+")


def normalise_title(text: str) -> str:
    """The identity-bearing words of a title, lower-case and space-separated, in title order."""
    return " ".join(_title_tokens(text))


def _title_tokens(text: str) -> list[str]:
    ascii_only = text.isascii()
    if not ascii_only:
        text = unicodedata.normalize("NFKC", text)
    text = text.casefold()
    if _SYMBOL.search(text):
        text = text.translate(_SYMBOLS)
    if "'" in text:
        text = _POSSESSIVE.sub("", text).replace("'", "")
    if "." in text:
        text = _ACRONYM.sub(lambda m: m.group(0).replace(".", ""), text)
    if _DIGIT.search(text):
        if "," in text:
            text = _THOUSANDS.sub(r"\1", text)
        if "-" in text:
            text = _MINUS.sub(_minus, text)
        text = _NUMBER_RUN.sub(_number_run, text)
    if ascii_only:
        text = text.encode("ascii").translate(_ASCII_PUNCTUATION).decode("ascii")
    else:
        text = _PUNCTUATION.sub(" ", text)
    if "." in text:
        text = _STRAY_DOT.sub(" ", text)
    return _fold_words(text.split())


def _fold_words(words: list[str]) -> list[str]:
    """Canonical phrases and words, stop words dropped, numbers canonical, plurals folded."""
    text = f" {' '.join(words)} "
    if " than " in text or " or " in text or " at " in text or " united " in text:
        words = _PHRASE.sub(_phrase, text).split()
    return [token for token in map(_fold_word, words) if token]


@functools.lru_cache(maxsize=1 << 16)
def _fold_word(word: str) -> str:
    """One word's canonical form; empty for a stop word."""
    token = _TOKEN_MAP.get(word, word)
    if token in _STOP_WORDS:
        return ""
    if token[0].isdigit() and _PURE_NUMBER.fullmatch(token):
        return _canonical_number(Decimal(token))
    if len(token) > 3 and token[-1] == "s" and token[-2] not in "sui" and token.isalpha():
        # A plain English plural: "tweets" and "tweet" agree, both sides folding alike.
        return token[:-3] + "y" if token.endswith("ies") and len(token) > 4 else token[:-1]
    return token


def _minus(match: re.Match[str]) -> str:
    """A minus sign, not a hyphen: nothing word-like or numeric stands right before it."""
    start = match.start()
    before = match.string[start - 1] if start else " "
    return "-" if before.isalnum() or before in "._" else " minus "


def _number_run(match: re.Match[str]) -> str:
    low, high, letter, word, plus = match.groups()
    start = match.start()
    if start and (match.string[start - 1].isalnum() or match.string[start - 1] == "."):
        return match.group(0)  # digits inside a word ("q4", "covid19") or a decimal
    if plus:
        return f"{match.group(0)[: match.start(5) - start]} above "
    if word or (letter and letter not in _ORDINALS):
        scale = _MAGNITUDES[letter or word]
        numbers = (low,) if high is None else (low, high)
        return " ".join(_canonical_number(Decimal(n) * scale) for n in numbers)
    if letter:  # an ordinal
        return low if high is None else f"{low} {high}"
    return match.group(0)


def _phrase(match: re.Match[str]) -> str:
    return _PHRASE_MAP[match.group(0)]


def _canonical_number(value: Decimal) -> str:
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")
