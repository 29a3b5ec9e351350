"""Which platform event a feed's market is about: a deterministic, explainable matcher.

Titles are first normalised (`normalise_title`): NFKC, case-folded, punctuation dropped, numbers
made canonical ("250,000" = "250k" = "250000", "1st" = "1", "6.30%" = "6.3 percent"), comparison
phrases made canonical ("more than", "or more", "at least", "over", "600+" → "above"; "less than",
"or fewer", "at most", "under" → "below"), month and a few other abbreviations expanded, plurals
folded, and stop words with no identity dropped. Numbers, dates, names and comparison words stay.

A market is read twice when it has a parent (its event or group title): as its own title, and as
the parent title followed by the outcome it prices ("How many Elon Musk posts on X the week
ending on Mar 28, 2025?" + "850 or above"); the better reading counts. `score(market, event)`
combines four components, each in [0, 1]:

    component  weight  what it measures
    token      0.55    weighted token overlap: the mean of weighted Jaccard and weighted
                       containment (overlap / the lighter side). A token weighs 1 + 2 × its IDF
                       scaled to [0, 1] over the indexed events (1 in every event, 3 in none),
                       × 1.5 when it carries a digit; without an index, 1 (× 1.5).
    char       0.20    Dice overlap of the character trigrams of the normalised titles (in title
                       order): catches spelling variants ("Deep-mind"/"DeepMind") and word order.
    slug       0.10    Dice overlap of the slugs' normalised tokens; only when both have a slug.
    date       0.15    close times within 24 h → 1, falling linearly to 0 at 7 days apart; only
                       when both have a close time.

A missing component is left out and the remaining weights renormalised, so a missing slug or date
never counts as a mismatch. The weighted mean is then capped, because titles that agree in every
word but one are the classic false match of prediction markets:

    cap   when
    0.40  both titles carry numbers and each has one the other lacks (850 vs 900, 2024 vs 2025)
    0.70  both carry numbers and one side's are a strict subset of the other's (a missing year)
    0.40  opposite comparison words (above/below, before/after, more/less), or the two sides of
          "before"/"after" swapped ("A before B" against "B before A")
    0.70  both close times known and 7 or more days apart (a weekly series repeats its title)

Every cap is below DEFAULT_MATCH_THRESHOLD, so a capped pair is never accepted automatically; it
reaches the review queue as a suggestion, with the reason in `MatchAttempt.reasons`. A best event
at or above the threshold is accepted unless another scores within AMBIGUITY_MARGIN of it (two
events with the same title and no dates to tell them apart): then a reviewer decides.

The character component is a trigram Dice rather than difflib's SequenceMatcher: SequenceMatcher
costs about 0.1 ms per title pair here, which alone would spend the matching budget (10,000
markets against 5,000 events in well under 2 s); a trigram Dice costs about 1 µs and rewards the
same things.

`EventIndex` indexes the events once by normalised token. A market text's candidates are the
events sharing an informative token with it (one held by at most COMMON_TOKEN_SHARE of the events,
and at least MIN_COMMON_DF; any token when the text has none), and of those the MAX_CANDIDATES
with the best token similarity on informative tokens. Their token, date and cap parts are
computed for the whole batch of markets at once with numpy, giving each candidate an upper bound
of its score; exact scores are then taken in bound order, only until no remaining candidate can
change the answer. An accepted match carries its one attempt; a market left for review carries
the `top_k` best attempts.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import heapq
import math
import re
import string
import unicodedata
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import numpy as np

from predict_pipeline.feeds.records import NormalisedRecord

# Above this, two titles differ by at most a stray word and agree on every number, direction and
# close date; anything looser goes to a human, since a wrong link corrupts an event's history.
DEFAULT_MATCH_THRESHOLD = 0.8

WEIGHTS = {"token": 0.55, "char": 0.20, "slug": 0.10, "date": 0.15}
NUMBER_CONFLICT_CAP = 0.40
NUMBER_SUBSET_CAP = 0.70
DIRECTION_CONFLICT_CAP = 0.40
DATE_CONFLICT_CAP = 0.70
FULL_DATE_AGREEMENT_DAYS = 1.0
NO_DATE_AGREEMENT_DAYS = 7.0
NUMBER_TOKEN_BOOST = 1.5
# A runner-up this close to an accepted best means the title does not single out one event.
AMBIGUITY_MARGIN = 0.02
MAX_CANDIDATES = 25
# A token held by more than this share of the events (and more than MIN_COMMON_DF of them),
# such as "2025", is common: it proposes no candidates while the text has a rarer token.
COMMON_TOKEN_SHARE = 0.01
MIN_COMMON_DF = 50

METHODS = ("manual", "confirmed", "similarity", "none")

# ---------------------------------------------------------------------------------------
# Title normalisation

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


# ---------------------------------------------------------------------------------------
# Markets, events and decisions


@dataclass(frozen=True, slots=True)
class MarketRef:
    """A feed's market as the matcher sees it; `parent_title` is its event or group title."""

    source: str
    source_event_id: str
    title: str
    slug: str | None = None
    close_time: datetime | None = None
    category_hints: tuple[str, ...] = ()
    parent_title: str | None = None
    outcome: str | None = None

    def __post_init__(self) -> None:
        if not (self.title or "").strip() and not (self.parent_title or "").strip():
            raise ValueError(
                f"{self.source} {self.source_event_id}: market has no title to match on"
            )
        _require_utc(self.close_time, f"{self.source} {self.source_event_id} close_time")

    @classmethod
    def from_record(cls, record: NormalisedRecord, parent_title: str | None = None) -> MarketRef:
        """The market a normalised record prices; the parent title is looked up by the caller."""
        facts = record.market
        return cls(
            source=record.source,
            source_event_id=record.source_event_id,
            title=facts.title or "",
            slug=facts.slug,
            close_time=facts.close_time,
            category_hints=facts.category_hints,
            parent_title=parent_title,
            outcome=facts.outcome,
        )


@dataclass(frozen=True, slots=True)
class EventRef:
    """An open `prediction_events` row; `category` is its category's slug."""

    id: Hashable
    title: str
    slug: str
    close_time: datetime | None = None
    category: str | None = None
    tags: tuple[str, ...] = ()
    description: str | None = None

    def __post_init__(self) -> None:
        if not (self.title or "").strip():
            raise ValueError(f"prediction_events {self.id}: event has an empty title")
        _require_utc(self.close_time, f"prediction_events {self.id} resolution_date")


@dataclass(frozen=True, slots=True)
class MatchAttempt:
    """One scored event; `components` (all floats) and `reasons` say why it scored so."""

    event_id: Hashable
    score: float
    components: dict[str, float]
    reasons: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form for the review queue's `match_attempts` column."""
        return {
            "event_id": str(self.event_id),
            "score": round(self.score, 4),
            "components": {k: round(v, 4) for k, v in self.components.items()},
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True, slots=True)
class MatchDecision:
    """The event a market is linked to, or None with the best suggestions for a reviewer."""

    event_id: Hashable | None
    confidence: float
    method: str  # one of METHODS
    attempts: list[MatchAttempt] = field(default_factory=list)
    reason: str | None = None  # why a similarity match was not accepted

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"match method {self.method!r} is not one of {METHODS}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"match confidence {self.confidence} is outside [0, 1]")

    @property
    def suggested_event_id(self) -> Hashable | None:
        return self.attempts[0].event_id if self.attempts else None


def _require_utc(moment: datetime | None, what: str) -> None:
    if moment is not None and moment.utcoffset() is None:
        raise ValueError(f"{what}: {moment.isoformat()} has no time zone")


# ---------------------------------------------------------------------------------------
# Scoring one pair


@dataclass(slots=True)
class _Text:
    sequence: tuple[str, ...]  # normalised tokens in title order
    tokens: frozenset[str]
    numbers: frozenset[str]
    directions: frozenset[str]  # its comparison words
    trigrams: frozenset[str]
    label: str  # which market text it came from


def _text(source: str, label: str = "title") -> _Text:
    sequence = tuple(_title_tokens(source))
    unique = frozenset(sequence)
    # The trigrams of " t1 t2 t3 ": each token's own, plus those spanning a space.
    trigrams = set().union(*map(_token_trigrams, unique))
    trigrams.update(f"{a[-1]} {b[0]}" for a, b in zip(sequence, sequence[1:], strict=False))
    return _Text(
        sequence=sequence,
        tokens=unique,
        numbers=frozenset([t for t in unique if not t.isalpha()]),
        directions=unique.intersection(_DIRECTION_WORDS),
        trigrams=frozenset(trigrams),
        label=label,
    )


@functools.lru_cache(maxsize=1 << 16)
def _token_trigrams(token: str) -> frozenset[str]:
    padded = f" {token} "
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))


def _market_texts(market: MarketRef) -> list[_Text]:
    """The market's own title, and its parent's title with the outcome it prices."""
    texts = []
    if (market.title or "").strip():
        texts.append(_text(market.title))
    if market.parent_title and market.parent_title.strip():
        outcome = (market.outcome or "").strip()
        # A yes/no outcome names no thing: the parent title alone is the question.
        suffix = "" if outcome.casefold() in ("", "yes", "no") else f" {outcome}"
        texts.append(_text(market.parent_title + suffix, "parent title and outcome"))
    return [t for t in texts if t.tokens] or texts[:1]


def _slug_tokens(slug: str | None) -> frozenset[str]:
    """A slug is already lower-case words joined by hyphens: split it and fold the words."""
    if not slug:
        return frozenset()
    return frozenset(_fold_words([w for w in _SLUG_SEPARATOR.split(slug.casefold()) if w]))


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _intrinsic_weight(token: str) -> float:
    return 1.0 if token.isalpha() else NUMBER_TOKEN_BOOST  # a token with a digit in it


@dataclass(slots=True)
class _Side:
    """A prepared market text or event: everything scoring reads."""

    text: _Text
    slug: frozenset[str]
    close: float | None  # epoch seconds
    weight: float  # summed token weights


class _Weighting:
    """Token weights: an index's IDF-scaled weights, or intrinsic ones without an index."""

    def __init__(self, weights: dict[str, float] | None = None, unseen: float = 1.0):
        self.weights = weights or {}
        self.unseen = unseen

    def of(self, token: str) -> float:
        found = self.weights.get(token)
        return found if found is not None else self.unseen * _intrinsic_weight(token)

    def side(self, text: _Text, slug: frozenset[str], close: float | None) -> _Side:
        # fsum: the same total whatever order the set yields its tokens in.
        return _Side(text, slug, close, math.fsum(map(self.of, text.tokens)))

    def market_sides(self, market: MarketRef) -> list[_Side]:
        slug = _slug_tokens(market.slug)
        close = _epoch(market.close_time)
        return [self.side(text, slug, close) for text in _market_texts(market)]

    def event_side(self, event: EventRef) -> _Side:
        return self.side(_text(event.title), _slug_tokens(event.slug), _epoch(event.close_time))

    def measure(self, market: _Side, event: _Side) -> tuple[dict[str, float], float, float]:
        """The components present, their weighted mean, and the cap that applies."""
        overlap = math.fsum(map(self.of, market.text.tokens & event.text.tokens))
        components = {
            "token": _token_similarity(overlap, market.weight, event.weight),
            "char": _dice(market.text.trigrams, event.text.trigrams),
        }
        if market.slug and event.slug:
            components["slug"] = _dice(market.slug, event.slug)
        if market.close is not None and event.close is not None:
            components["date"] = _date_similarity(market.close, event.close)
        total = sum(WEIGHTS[name] for name in components)
        weighted = min(
            1.0, sum(WEIGHTS[name] * value for name, value in components.items()) / total
        )
        return components, weighted, _cap(market.text, event.text, components.get("date"))

    def attempt(self, event_id: Hashable, market: _Side, event: _Side) -> MatchAttempt:
        """The score with its components and the reasons for any cap, for a human."""
        components, weighted, cap = self.measure(market, event)
        components["weighted"] = weighted
        if cap < weighted:
            components["cap"] = cap
        return MatchAttempt(event_id, min(weighted, cap), components, _reasons(market, event))


def _token_similarity(overlap: float, left: float, right: float) -> float:
    if overlap <= 0.0:
        return 0.0
    jaccard = overlap / (left + right - overlap)
    containment = overlap / min(left, right)
    return min(1.0, (jaccard + containment) / 2)


def _dice(left: frozenset[str], right: frozenset[str]) -> float:
    if not left or not right:
        return 0.0
    return 2 * len(left & right) / (len(left) + len(right))


def _date_similarity(left: float, right: float) -> float:
    days = abs(left - right) / 86400
    span = NO_DATE_AGREEMENT_DAYS - FULL_DATE_AGREEMENT_DAYS
    return min(1.0, max(0.0, 1.0 - (days - FULL_DATE_AGREEMENT_DAYS) / span))


def _number_cap(left: frozenset[str], right: frozenset[str]) -> float:
    if not left or not right or left == right:
        return 1.0
    return NUMBER_SUBSET_CAP if left < right or right < left else NUMBER_CONFLICT_CAP


def _direction_conflict(left: _Text, right: _Text) -> tuple[str, str] | None:
    if not (left.directions and right.directions):
        return None
    for pair in _DIRECTION_PAIRS:
        mine = left.directions.intersection(pair)
        theirs = right.directions.intersection(pair)
        if mine and theirs and mine != theirs:
            return " ".join(sorted(mine)), " ".join(sorted(theirs))
    return None


def _swapped_order(left: _Text, right: _Text) -> str | None:
    """The same words asking the opposite question: "A before B" against "B before A"."""
    if not (left.directions and right.directions):
        return None
    for word in _ORDER_WORDS:
        if word in left.directions and word in right.directions:
            left_head, left_tail = _split(left.sequence, word)
            right_head, right_tail = _split(right.sequence, word)
            if not (left_head and left_tail and right_head and right_tail):
                continue  # "Before March, will X…": nothing on one side to compare
            swapped = _jaccard(left_head, right_tail) + _jaccard(left_tail, right_head)
            if swapped > _jaccard(left_head, right_head) + _jaccard(left_tail, right_tail):
                return word
    return None


def _split(sequence: tuple[str, ...], word: str) -> tuple[set[str], set[str]]:
    at = sequence.index(word)
    return set(sequence[:at]), set(sequence[at + 1 :])


def _jaccard(left: set[str], right: set[str]) -> float:
    return len(left & right) / len(left | right)


def _cap(market: _Text, event: _Text, date: float | None) -> float:
    cap = _number_cap(market.numbers, event.numbers)
    if cap > DIRECTION_CONFLICT_CAP and (
        _direction_conflict(market, event) or _swapped_order(market, event)
    ):
        cap = DIRECTION_CONFLICT_CAP
    if date == 0.0:
        cap = min(cap, DATE_CONFLICT_CAP)
    return cap


def _reasons(market: _Side, event: _Side) -> tuple[str, ...]:
    reasons = []
    if market.text.label != "title":
        reasons.append(f"scored on the market's {market.text.label}")
    mine, theirs = market.text.numbers, event.text.numbers
    if mine and theirs and mine != theirs:
        reasons.append(f"numbers differ: market {sorted(mine)} vs event {sorted(theirs)}")
    conflict = _direction_conflict(market.text, event.text)
    if conflict:
        reasons.append(f"opposite comparison: market {conflict[0]!r} vs event {conflict[1]!r}")
    swapped = _swapped_order(market.text, event.text)
    if swapped:
        reasons.append(f"the two sides of {swapped!r} are swapped")
    if market.close is not None and event.close is not None:
        days = abs(market.close - event.close) / 86400
        if days > FULL_DATE_AGREEMENT_DAYS:
            reasons.append(f"close times {days:.1f} days apart")
    return tuple(reasons)


_INTRINSIC = _Weighting()


def score(market: MarketRef, event: EventRef) -> MatchAttempt:
    """Score one market against one event without corpus statistics (every word weighs alike).

    The better of the market's texts counts: its title, or its parent title with the outcome.
    """
    return _best_attempt(_INTRINSIC, market, event)


def _best_attempt(weighting: _Weighting, market: MarketRef, event: EventRef) -> MatchAttempt:
    side = weighting.event_side(event)
    attempts = [weighting.attempt(event.id, m, side) for m in weighting.market_sides(market)]
    return max(attempts, key=lambda a: a.score)


# ---------------------------------------------------------------------------------------
# The index


class EventIndex:
    """Events indexed once by normalised token, so a market is scored against few of them."""

    def __init__(self, events: Iterable[EventRef], *, max_candidates: int = MAX_CANDIDATES):
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be at least 1, got {max_candidates}")
        with _cyclic_gc_paused():
            self._build(list(events), max_candidates)

    def _build(self, events: list[EventRef], max_candidates: int) -> None:
        self._events = events
        self._max_candidates = max_candidates
        seen: set[Hashable] = set()
        for event in self._events:
            if event.id in seen:
                raise ValueError(f"prediction_events {event.id}: listed twice")
            seen.add(event.id)
        texts = [_text(e.title) for e in self._events]
        postings: dict[str, list[int]] = {}
        for position, text in enumerate(texts):
            for token in text.tokens:
                postings.setdefault(token, []).append(position)
        count = len(self._events)
        spread = math.log(count + 2)  # scales IDF to [0, 1]: 0 in every event, 1 in none
        self._weighting = _Weighting(
            {
                token: _intrinsic_weight(token)
                * (1 + 2 * math.log((count + 1) / (len(positions) + 1)) / spread)
                for token, positions in postings.items()
            },
            unseen=1 + 2 * math.log(count + 1) / spread,
        )
        self._sides = [
            self._weighting.side(text, _slug_tokens(e.slug), _epoch(e.close_time))
            for e, text in zip(self._events, texts, strict=True)
        ]
        self._postings = {token: np.array(p, dtype=np.int64) for token, p in postings.items()}
        # Common tokens propose no candidates; a dense row says which events hold each one.
        common_df = max(MIN_COMMON_DF, int(count * COMMON_TOKEN_SHARE))
        common = sorted(t for t, p in postings.items() if len(p) > common_df)
        self._common_row = {token: row for row, token in enumerate(common)}
        self._common = np.zeros((len(common), count), dtype=bool)
        for row, token in enumerate(common):
            self._common[row, self._postings[token]] = True
        self._weight = np.array([s.weight for s in self._sides], dtype=float)
        self._close = np.array(
            [math.nan if s.close is None else s.close for s in self._sides], dtype=float
        )
        self._number_count = np.array([len(t.numbers) for t in texts], dtype=float)
        self._trigram_count = np.array([len(t.trigrams) for t in texts], dtype=float)
        self._has_slug = np.array([bool(s.slug) for s in self._sides], dtype=bool)
        self._has = np.array(
            [[w in t.tokens for w in _DIRECTION_WORDS] for t in texts], dtype=bool
        ).reshape(count, len(_DIRECTION_WORDS))

    def __len__(self) -> int:
        return len(self._events)

    def score(self, market: MarketRef, event: EventRef) -> MatchAttempt:
        """Score one pair under this index's token weights, bypassing candidate selection."""
        return _best_attempt(self._weighting, market, event)

    def match(
        self, market: MarketRef, *, threshold: float = DEFAULT_MATCH_THRESHOLD, top_k: int = 3
    ) -> MatchDecision:
        """Link the best event when it scores at least `threshold` and no rival comes within
        AMBIGUITY_MARGIN; otherwise no event, with the `top_k` best attempts for a reviewer."""
        return self.match_many([market], threshold=threshold, top_k=top_k)[0]

    def match_many(
        self,
        markets: Sequence[MarketRef],
        *,
        threshold: float = DEFAULT_MATCH_THRESHOLD,
        top_k: int = 3,
    ) -> list[MatchDecision]:
        """`match` for many markets at once: the array work is shared by all of them."""
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"match threshold must be in (0, 1], got {threshold}")
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        with _cyclic_gc_paused():
            return self._match_many(markets, threshold, top_k)

    def _match_many(
        self, markets: Sequence[MarketRef], threshold: float, top_k: int
    ) -> list[MatchDecision]:
        sides: list[_Side] = []
        owners: list[int] = []
        for number, market in enumerate(markets):
            for side in self._weighting.market_sides(market):
                sides.append(side)
                owners.append(number)
        pairs = self._pairs(sides, np.array(owners, dtype=np.int64), len(markets))
        ranker = _Ranker(pairs, sides, self._sides)
        decisions = []
        for number in range(len(markets)):
            ranker.start(number)
            best = ranker.top(1)
            if not best:
                decisions.append(
                    MatchDecision(None, 0.0, "none", [], "no open event shares a word")
                )
                continue
            best_score = best[0][0]
            reason = "below threshold"
            if best_score >= threshold:
                # Only a rival within the margin matters, so only such rivals are scored.
                rivals = ranker.top(2, floor=best_score - AMBIGUITY_MARGIN)[1:]
                if not rivals:
                    attempt = self._attempt(pairs, sides, best[0])
                    decisions.append(
                        MatchDecision(attempt.event_id, best_score, "similarity", [attempt])
                    )
                    continue
                reason = f"ambiguous: the runner-up scores within {AMBIGUITY_MARGIN}"
            attempts = [self._attempt(pairs, sides, c) for c in ranker.top(top_k)]
            decisions.append(MatchDecision(None, best_score, "none", attempts, reason))
        return decisions

    def _attempt(self, pairs: _Pairs, sides: list[_Side], choice: _Choice) -> MatchAttempt:
        score, weighted, cap, char, slug, at = choice
        position = pairs.event[at]
        components = {"token": pairs.token[at], "char": char}
        if slug is not None:
            components["slug"] = slug
        if not math.isnan(pairs.date[at]):
            components["date"] = pairs.date[at]
        components["weighted"] = weighted
        if cap < weighted:
            components["cap"] = cap
        return MatchAttempt(
            self._events[position].id,
            score,
            components,
            _reasons(sides[pairs.side[at]], self._sides[position]),
        )

    def _pairs(self, sides: list[_Side], owners: np.ndarray, markets: int) -> _Pairs:
        """(market text, event) candidate pairs, scored in array arithmetic but for two parts.

        Candidates share an informative token (one in at most `common_df` events) with the
        market text, or any token when the text has no informative one; per text, the
        `max_candidates` with the best informative token similarity are kept. Every component
        and cap is then computed but the trigram and slug components (taken as perfect in
        `bound`) and the swapped-sides check.
        """
        of = self._weighting.of
        postings, common_row = self._postings, self._common_row
        arrays, array_side, array_weight, array_number = [], [], [], []
        common_side, common_rows, common_weight, common_number = [], [], [], []
        for number, side in enumerate(sides):
            known = sorted(t for t in side.text.tokens if t in postings)  # a fixed sum order
            informative = [t for t in known if t not in common_row]
            numbers = side.text.numbers
            for token in informative or known:
                arrays.append(postings[token])
                array_side.append(number)
                array_weight.append(of(token))
                array_number.append(token in numbers)
            if informative:
                for token in known:
                    if token in common_row:
                        common_side.append(number)
                        common_rows.append(common_row[token])
                        common_weight.append(of(token))
                        common_number.append(token in numbers)
        if not arrays:
            return _Pairs.none(markets)
        size = len(self._events)
        lengths = [len(a) for a in arrays]
        keys = np.repeat(np.array(array_side, dtype=np.int64) * size, lengths)
        keys += np.concatenate(arrays)
        keys, inverse = np.unique(keys, return_inverse=True)
        overlap = np.bincount(inverse, weights=np.repeat(array_weight, lengths))
        shared_numbers = np.bincount(inverse, weights=np.repeat(array_number, lengths))
        pair_side, pair_event = np.divmod(keys, size)
        side_weight = np.array([s.weight for s in sides])
        proxy = _token_similarity_array(overlap, side_weight[pair_side], self._weight[pair_event])
        # Best first within each text; a stable sort keeps ties in event order.
        order = np.argsort(pair_side * 2.0 - proxy, kind="stable")
        ordered_side = pair_side[order]
        rank = np.arange(len(order)) - np.searchsorted(ordered_side, ordered_side)
        kept = np.sort(order[rank < self._max_candidates])
        pair_side, pair_event = pair_side[kept], pair_event[kept]
        overlap, shared_numbers = overlap[kept], shared_numbers[kept]
        if common_side:
            # The common tokens' share, for the kept pairs of the texts that hold them.
            common_at = np.array(common_side, dtype=np.int64)
            start = np.searchsorted(pair_side, common_at)
            spans = np.searchsorted(pair_side, common_at + 1) - start
            at = np.repeat(start - np.cumsum(spans) + spans, spans) + np.arange(spans.sum())
            held = self._common[np.repeat(common_rows, spans), pair_event[at]]
            overlap = overlap + np.bincount(
                at, weights=held * np.repeat(common_weight, spans), minlength=len(kept)
            )
            shared_numbers = shared_numbers + np.bincount(
                at, weights=held * np.repeat(common_number, spans), minlength=len(kept)
            )
        token = _token_similarity_array(overlap, side_weight[pair_side], self._weight[pair_event])
        partial = WEIGHTS["token"] * token
        total = np.full(len(kept), WEIGHTS["token"] + WEIGHTS["char"])
        cap = np.ones(len(kept))

        side_slug = np.array([bool(s.slug) for s in sides])
        has_slug = side_slug[pair_side] & self._has_slug[pair_event]
        total += WEIGHTS["slug"] * has_slug
        side_close = np.array([math.nan if s.close is None else s.close for s in sides])
        days = np.abs(side_close[pair_side] - self._close[pair_event]) / 86400
        dated = ~np.isnan(days)
        span = NO_DATE_AGREEMENT_DAYS - FULL_DATE_AGREEMENT_DAYS
        date = np.clip(1.0 - (days - FULL_DATE_AGREEMENT_DAYS) / span, 0.0, 1.0)
        partial += np.where(dated, WEIGHTS["date"] * date, 0.0)
        total += WEIGHTS["date"] * dated
        cap[dated & (date == 0.0)] = DATE_CONFLICT_CAP

        # `_number_cap` from counts: equal sets share all; a strict subset shares all of its own.
        mine = np.array([len(s.text.numbers) for s in sides], dtype=float)[pair_side]
        theirs = self._number_count[pair_event]
        all_mine, all_theirs = shared_numbers == mine, shared_numbers == theirs
        differ = (mine > 0) & (theirs > 0) & ~(all_mine & all_theirs)
        subset = (all_mine & (mine < theirs)) | (all_theirs & (theirs < mine))
        cap[differ & subset] = np.minimum(cap[differ & subset], NUMBER_SUBSET_CAP)
        cap[differ & ~subset] = np.minimum(cap[differ & ~subset], NUMBER_CONFLICT_CAP)
        side_has = np.array(
            [[w in s.text.directions for w in _DIRECTION_WORDS] for s in sides], dtype=bool
        ).reshape(len(sides), len(_DIRECTION_WORDS))[pair_side]
        event_has = self._has[pair_event]
        for first in range(0, len(_DIRECTION_WORDS), 2):
            mine, theirs = side_has[:, first : first + 2], event_has[:, first : first + 2]
            conflict = mine.any(axis=1) & theirs.any(axis=1) & (mine != theirs).any(axis=1)
            cap[conflict] = np.minimum(cap[conflict], DIRECTION_CONFLICT_CAP)
        # Trigram Dice can be no more than the smaller set allows: 2 min(a, b) / (a + b).
        mine_trigrams = np.array([len(s.text.trigrams) for s in sides], dtype=float)[pair_side]
        theirs_trigrams = self._trigram_count[pair_event]
        char = 2 * np.minimum(mine_trigrams, theirs_trigrams) / (mine_trigrams + theirs_trigrams)
        bound = np.minimum(
            (partial + WEIGHTS["char"] * char + WEIGHTS["slug"] * has_slug) / total, cap
        )
        return _Pairs.build(
            markets,
            owners[pair_side],
            side=pair_side,
            event=pair_event,
            token=token,
            date=np.where(dated, date, math.nan),
            has_slug=has_slug,
            partial=partial,
            total=total,
            cap=cap,
            bound=bound,
        )


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch builds many small, acyclic objects.

    Matching creates hundreds of thousands of sets, tuples and attempts and no reference
    cycles; the collector's repeated walks over them cost about a fifth of the run time.
    Reference counting still frees everything, and the collector resumes as it was.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _token_similarity_array(overlap: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """`_token_similarity` over arrays of pairs."""
    jaccard = overlap / (left + right - overlap)
    containment = overlap / np.minimum(left, right)
    return np.minimum(1.0, (jaccard + containment) / 2)


@dataclass(frozen=True, slots=True)
class _Pairs:
    """Candidate (market text, event) pairs, the best bound first within each market.

    Columns are memoryviews over arrays: indexing one yields a Python number, and the cyclic
    garbage collector does not walk them element by element as it would walk lists.
    """

    start: Sequence[int]  # the pairs of market i are start[i]:start[i + 1]
    side: Sequence[int]
    event: Sequence[int]
    token: Sequence[float]
    date: Sequence[float]  # NaN when either close time is missing
    has_slug: Sequence[bool]
    partial: Sequence[float]  # weighted sum of the token and date components
    total: Sequence[float]  # the sum of the weights of the components present
    cap: Sequence[float]  # every cap but the swapped-sides one
    bound: Sequence[float]  # an upper bound of the score

    @classmethod
    def none(cls, markets: int) -> _Pairs:
        empty = memoryview(np.empty(0))
        return cls(memoryview(np.zeros(markets + 1, dtype=np.int64)), *[empty] * 9)

    @classmethod
    def build(cls, markets: int, owner: np.ndarray, **columns: np.ndarray) -> _Pairs:
        order = np.lexsort((columns["event"], -columns["bound"], owner))
        start = np.searchsorted(owner[order], np.arange(markets + 1))
        return cls(
            start=memoryview(start.astype(np.int64)),
            **{name: memoryview(np.ascontiguousarray(c[order])) for name, c in columns.items()},
        )


# (score, weighted mean, cap, trigram component, slug component or None, pair)
_Choice = tuple[float, float, float, float, float | None, int]


class _Ranker:
    """Exact scores of one market's candidate pairs, computed lazily in the order of their bound.

    `top(k)` scores pairs (best bound first, ties by event order) until no remaining pair can
    enter the top k, so asking for the best alone scores few pairs; scores are remembered
    between calls for the same market.
    """

    def __init__(self, pairs: _Pairs, sides: list[_Side], events: list[_Side]):
        self._pairs, self._sides, self._events = pairs, sides, events
        self._scored: dict[int, _Choice] = {}
        self._lo = self._hi = 0

    def start(self, market: int) -> None:
        self._scored = {}
        self._lo, self._hi = self._pairs.start[market], self._pairs.start[market + 1]

    def top(self, keep: int, floor: float = -1.0) -> list[_Choice]:
        """The `keep` best events' choices, best first; only those scoring above `floor`."""
        pairs = self._pairs
        bound, event_of = pairs.bound, pairs.event
        best: dict[int, _Choice] = {}
        # A min-heap of the `keep` best (score, -position) so far: the worst of them on top.
        leaders: list[tuple[float, int]] = []
        for at in range(self._lo, self._hi):
            position = event_of[at]
            if bound[at] <= floor or (len(leaders) == keep and (bound[at], -position) < leaders[0]):
                # Pairs come by falling bound, then rising position: none left can score above
                # the floor or displace the worst leader, even on a tie (the lower position wins).
                break
            choice = self._scored.get(at) or self._score(at)
            held = best.get(position)
            if held is not None:
                # The market's other text already scored this event: keep the better reading.
                if choice[0] > held[0]:
                    best[position] = choice
                continue
            best[position] = choice
            if len(leaders) < keep:
                heapq.heappush(leaders, (choice[0], -position))
            elif (choice[0], -position) > leaders[0]:
                heapq.heapreplace(leaders, (choice[0], -position))
        ordered = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))
        return [choice for _, choice in ordered[:keep] if choice[0] > floor]

    def _score(self, at: int) -> _Choice:
        pairs = self._pairs
        text, event = self._sides[pairs.side[at]], self._events[pairs.event[at]]
        char = _dice(text.text.trigrams, event.text.trigrams)
        value = pairs.partial[at] + WEIGHTS["char"] * char
        slug = None
        if pairs.has_slug[at]:
            slug = _dice(text.slug, event.slug)
            value += WEIGHTS["slug"] * slug
        weighted = min(1.0, value / pairs.total[at])  # no float rounding above 1
        cap = pairs.cap[at]
        if (
            text.text.directions
            and min(weighted, cap) > DIRECTION_CONFLICT_CAP
            and _swapped_order(text.text, event.text)
        ):
            cap = DIRECTION_CONFLICT_CAP
        choice = (min(weighted, cap), weighted, cap, char, slug, at)
        self._scored[at] = choice
        return choice


# ---------------------------------------------------------------------------------------
# Matchers


@runtime_checkable
class Matcher(Protocol):
    """What `auto` and `ai` event mapping call: one decision per market, in order."""

    def match_many(
        self, markets: list[MarketRef], events: list[EventRef], *, threshold: float
    ) -> list[MatchDecision]: ...


@dataclass(frozen=True, slots=True)
class SimilarityMatcher:
    """The default matcher of `auto` and `ai` mapping: `EventIndex` similarity."""

    top_k: int = 3
    max_candidates: int = MAX_CANDIDATES

    def match_many(
        self,
        markets: Sequence[MarketRef],
        events: Sequence[EventRef],
        *,
        threshold: float = DEFAULT_MATCH_THRESHOLD,
    ) -> list[MatchDecision]:
        index = EventIndex(events, max_candidates=self.max_candidates)
        return index.match_many(markets, threshold=threshold, top_k=self.top_k)
