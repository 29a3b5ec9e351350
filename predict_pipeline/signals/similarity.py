"""How much a feed's market and an event look alike: a deterministic, explainable score.

Both sides' titles are read as `titles.normalise_title` reads them.

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
"""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from predict_pipeline.model import NormalisedRecord
from predict_pipeline.signals.titles import (
    _DIRECTION_PAIRS,
    _DIRECTION_WORDS,
    _ORDER_WORDS,
    _SLUG_SEPARATOR,
    _fold_words,
    _title_tokens,
)

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

METHODS = ("manual", "confirmed", "similarity", "none")

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
