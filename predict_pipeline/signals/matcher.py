"""Which platform event a feed's market is about: the event index and the matchers.

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
import gc
import heapq
import math
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np

from predict_pipeline.signals.similarity import (
    DATE_CONFLICT_CAP,
    DEFAULT_MATCH_THRESHOLD,
    DIRECTION_CONFLICT_CAP,
    FULL_DATE_AGREEMENT_DAYS,
    NO_DATE_AGREEMENT_DAYS,
    NUMBER_CONFLICT_CAP,
    NUMBER_SUBSET_CAP,
    WEIGHTS,
    EventRef,
    MarketRef,
    MatchAttempt,
    MatchDecision,
    _best_attempt,
    _dice,
    _epoch,
    _intrinsic_weight,
    _reasons,
    _Side,
    _slug_tokens,
    _swapped_order,
    _text,
    _Weighting,
)
from predict_pipeline.signals.titles import _DIRECTION_WORDS

# A runner-up this close to an accepted best means the title does not single out one event.
AMBIGUITY_MARGIN = 0.02
MAX_CANDIDATES = 25
# A token held by more than this share of the events (and more than MIN_COMMON_DF of them),
# such as "2025", is common: it proposes no candidates while the text has a rarer token.
COMMON_TOKEN_SHARE = 0.01
MIN_COMMON_DF = 50


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
        similarity = _token_similarity_array(
            overlap, side_weight[pair_side], self._weight[pair_event]
        )
        partial = WEIGHTS["token"] * similarity
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
            token=similarity,
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
        empty = _column(np.empty(0))
        return cls(_column(np.zeros(markets + 1, dtype=np.int64)), *[empty] * 9)

    @classmethod
    def build(cls, markets: int, owner: np.ndarray, **columns: np.ndarray) -> _Pairs:
        order = np.lexsort((columns["event"], -columns["bound"], owner))
        start = np.searchsorted(owner[order], np.arange(markets + 1))
        return cls(
            start=_column(start.astype(np.int64)),
            **{name: _column(c[order]) for name, c in columns.items()},
        )


def _column(array: np.ndarray) -> memoryview[Any]:
    """A memoryview over `array` made contiguous; indexing it yields the array's Python scalars.

    ndarray.data is the same view as memoryview(array) (numpy types ndarray as a Buffer only
    from Python 3.12); its item type follows the array's dtype, known only at run time.
    """
    return cast("memoryview[Any]", np.ascontiguousarray(array).data)


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
