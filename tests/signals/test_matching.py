"""Market → event matching against real market titles from the recorded payloads.

Markets come from fixtures/payloads (see SOURCES.md); the events are written here, the
way a platform editor would word them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.model import MarketFacts, NormalisedRecord
from predict_pipeline.signals.matcher import (
    MAX_CANDIDATES,
    EventIndex,
    Matcher,
    SimilarityMatcher,
)
from predict_pipeline.signals.similarity import (
    DATE_CONFLICT_CAP,
    DEFAULT_MATCH_THRESHOLD,
    DIRECTION_CONFLICT_CAP,
    NUMBER_CONFLICT_CAP,
    NUMBER_SUBSET_CAP,
    EventRef,
    MarketRef,
    MatchAttempt,
    MatchDecision,
    score,
)
from predict_pipeline.signals.titles import normalise_title

PAYLOADS = PROJECT_ROOT / "fixtures" / "payloads"
END_2025 = datetime(2025, 12, 31, 12, tzinfo=UTC)
END_FEB_2026 = datetime(2026, 2, 28, 12, tzinfo=UTC)


def load(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def kalshi_markets(name: str) -> list[MarketRef]:
    """Kalshi markets; the parent title is the event's, where kalshi_events.json has it."""
    parents = {e["event_ticker"]: e["title"] for e in load("kalshi_events.json")["events"]}
    return [
        MarketRef(
            "kalshi",
            m["ticker"],
            m["title"],
            close_time=utc(m["close_time"]),
            parent_title=parents.get(m["event_ticker"]),
            outcome=m["yes_sub_title"],
        )
        for m in load(name)["markets"]
    ]


def polymarket_gamma_markets() -> list[MarketRef]:
    return [
        MarketRef(
            "polymarket",
            m["id"],
            m["question"],
            slug=m["slug"],
            close_time=utc(m["endDate"]),
            parent_title=m["events"][0]["title"],
            outcome=m["groupItemTitle"] or None,
        )
        for m in load("polymarket_gamma_markets.json")
    ]


def polymarket_event_markets() -> list[MarketRef]:
    (event,) = load("polymarket_gamma_events_by_slug.json")
    return [
        MarketRef(
            "polymarket",
            m["id"],
            m["question"],
            slug=m["slug"],
            close_time=utc(m["endDate"]),
            parent_title=event["title"],
            outcome=m["groupItemTitle"],
        )
        for m in event["markets"]
    ]


def manifold_markets() -> list[MarketRef]:
    return [
        MarketRef(
            "manifold",
            m["id"],
            m["question"],
            slug=m["slug"],
            close_time=datetime.fromtimestamp(m["closeTime"] / 1000, tz=UTC),
        )
        for m in load("manifold_markets.json")
    ]


def predictit_contracts() -> list[MarketRef]:
    """Contracts titled as the adapter titles them: the market's question, then the contract."""
    return [
        MarketRef(
            "predictit",
            str(c["id"]),
            f"{m['name']} — {c['name']}",
            parent_title=m["name"],
            outcome=c["name"],
        )
        for m in load("predictit_marketdata_all.json")["markets"]
        for c in m["contracts"]
    ]


def metaculus_posts() -> list[MarketRef]:
    return [
        MarketRef(
            "metaculus",
            str(p["id"]),
            p["title"],
            slug=p["slug"],
            close_time=utc(p["scheduled_close_time"]),
        )
        for p in load("metaculus_posts_list.json")["results"]
    ]


def market(markets: list[MarketRef], title: str) -> MarketRef:
    (found,) = [m for m in markets if m.title == title]
    return found


def event(event_id: str, title: str, close_time: datetime | None = None) -> EventRef:
    slug = "-".join(normalise_title(title).split())
    return EventRef(event_id, title, slug, close_time=close_time)


# ---------------------------------------------------------------------------------------
# Normalisation


@pytest.mark.parametrize(
    ("title", "normalised"),
    [
        # Kalshi leaves the week out of its market titles ("times in ?").
        (
            "Will Elon Musk post on X above 850 or above times in ?",
            "elon musk post x above 850 above time",
        ),
        ("Will Trump deport 250,000-500,000 people?", "trump deport 250000 500000 people"),
        ("Will Trump deport less than 250,000?", "trump deport below 250000"),
        (
            "Will Elon and DOGE cut between $50-100b in federal spending in 2025?",
            "elon doge cut 50000000000 100000000000 federal spending 2025",
        ),
        (
            "Brazil unemployment below 6.3% for Q4 2025?",
            "brazil unemployment below 6.3 percent q4 2025",
        ),
        ("Will GTA 6 cost $100+?", "gta 6 cost 100 above"),
        ("Will the United States attack Venezuela before 2026?", "us attack venezuela before 2026"),
        (
            "How many Elon Musk posts on X the week ending on Apr 4, 2025?",
            "elon musk post x week ending april 4 2025",
        ),
        (
            "Australian Open Men's Final: Exact Set Score",
            "australian open men final exact set score",
        ),
    ],
)
def test_normalise_title_keeps_numbers_names_and_comparisons(title: str, normalised: str) -> None:
    assert normalise_title(title) == normalised


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("S&P 500 above 6,000 on Dec 31st?", "s and p 500 over 6000 on December 31"),
        ("Will Trump deport 250,000-500,000 people?", "Trump deports 250k-500k people"),
        ("Will Elon tweet 600 or more times April 4 - 11?", "Elon tweets 600+ times, April 4–11"),
        ("U.S. GDP growth ≥ 3% in 2025", "US GDP growth at least 3 percent in 2025"),
        ("Ｅｌｏｎ Ｍｕｓｋ ２０２５", "elon musk 2025"),  # full-width, folded by NFKC
    ],
)
def test_normalise_title_equates_spellings_of_the_same_question(one: str, other: str) -> None:
    assert normalise_title(one) == normalise_title(other)


def test_normalise_title_tells_thresholds_and_directions_apart() -> None:
    assert normalise_title("Elon tweets 600 or more times") != normalise_title(
        "Elon tweets 600 or fewer times"
    )
    assert normalise_title("above 850") == "above 850"
    assert normalise_title("above 900") == "above 900"
    assert normalise_title("-5°C in May") == "minus 5 c may"


# ---------------------------------------------------------------------------------------
# Matching: near-identical titles, numbers, unrelated titles


def gamma_events() -> list[EventRef]:
    return [
        event("ev-deport-lt-250k", "Trump deports fewer than 250k people?", END_2025),
        event("ev-deport-250k-500k", "Trump deports 250k-500k people", END_2025),
        event("ev-deport-750k", "2025: will Trump deport 750,000 or more people?", END_2025),
        event(
            "ev-doge-50-100b", "Elon & DOGE cut $50b–$100b of federal spending in 2025", END_2025
        ),
        event("ev-brazil", "Brazil's unemployment rate below 6.3% in Q4 2025", END_2025),
        event("ev-gta", "GTA 6 costs $100 or more", END_FEB_2026),
        event("ev-budget-10", "Elon cuts the budget by at least 10% in 2025", END_FEB_2026),
        event("ev-budget-5", "Elon cuts the budget by at least 5% in 2025", END_FEB_2026),
    ]


def test_near_identical_titles_match_their_event() -> None:
    markets = polymarket_gamma_markets()
    decisions = SimilarityMatcher().match_many(markets, gamma_events(), threshold=0.8)
    linked = {m.title: d.event_id for m, d in zip(markets, decisions, strict=True)}
    assert linked == {
        "Will Trump deport less than 250,000?": "ev-deport-lt-250k",
        "Will Trump deport 250,000-500,000 people?": "ev-deport-250k-500k",
        "Will Trump deport 500,000-750,000- people?": None,
        "Will Trump deport 750,000-1,000,000 people?": None,
        "Will Trump deport 1,000,000-1,250,000 people?": None,
        "Will Trump deport 1,250,000-1,500,000 people?": None,
        "Will Trump deport 1,500,000-1,750,000 people?": None,
        "Will Trump deport 1,750,000-2,000,000 people?": None,
        "Will Trump deport 2,000,000 or more people?": None,
        # The reordered phrase ("2025: will Trump deport …") still matches.
        "Will Trump deport 750,000 or more people in 2025?": "ev-deport-750k",
        "Will Elon and DOGE cut less than $50b in federal spending in 2025?": None,
        "Will Elon and DOGE cut between $50-100b in federal spending in 2025?": "ev-doge-50-100b",
        "Will Elon and DOGE cut between $100-150b in federal spending in 2025?": None,
        "Will Elon and DOGE cut between $150-200b in federal spending in 2025?": None,
        "Will Elon and DOGE cut between $200-250b in federal spending in 2025?": None,
        "Will Elon and DOGE cut more than $250b in federal spending in 2025?": None,
        "Will Elon cut the budget by at least 10% in 2025?": "ev-budget-10",
        "Will Elon cut the budget by at least 5% in 2025?": "ev-budget-5",
        "Brazil unemployment below 6.3% for Q4 2025?": "ev-brazil",
        "Will GTA 6 cost $100+?": "ev-gta",
    }
    for decision in decisions:
        if decision.event_id is not None:
            assert decision.method == "similarity"
            assert decision.confidence >= DEFAULT_MATCH_THRESHOLD
            assert decision.attempts[0].event_id == decision.event_id
        else:
            assert decision.method == "none"
            assert decision.confidence < DEFAULT_MATCH_THRESHOLD


def test_a_differing_threshold_number_caps_the_score() -> None:
    markets = polymarket_gamma_markets()
    five = market(markets, "Will Elon cut the budget by at least 5% in 2025?")
    ten_percent = event(
        "ev-budget-10", "Elon cuts the budget by at least 10% in 2025", END_FEB_2026
    )
    attempt = score(five, ten_percent)
    assert attempt.score == NUMBER_CONFLICT_CAP
    assert attempt.components["weighted"] > DEFAULT_MATCH_THRESHOLD  # every other word agrees
    assert attempt.reasons == ("numbers differ: market ['2025', '5'] vs event ['10', '2025']",)
    # A missing year is a subset, capped below the threshold too, but above a conflict.
    no_year = event("ev-budget-5-any-year", "Elon cuts the budget by at least 5%", END_FEB_2026)
    assert score(five, no_year).score == NUMBER_SUBSET_CAP


def kalshi_week_events() -> list[EventRef]:
    week_end = datetime(2025, 3, 28, 16, tzinfo=UTC)
    return [
        event(
            "ev-850-or-more",
            "Will Elon Musk post 850 or more times on X in the week ending March 28, 2025?",
            week_end,
        ),
        event(
            "ev-900-or-more",
            "Will Elon Musk post 900 or more times on X in the week ending March 28, 2025?",
            week_end,
        ),
        event(
            "ev-800-849",
            "Will Elon Musk post 800 to 849 times on X in the week ending March 28, 2025?",
            week_end,
        ),
    ]


def test_kalshi_bracket_matches_only_the_event_with_its_number() -> None:
    markets = kalshi_markets("kalshi_markets_finalized_cents.json")
    events = kalshi_week_events()
    index = EventIndex(events)
    above_850 = market(markets, "Will Elon Musk post on X above 850 or above times in ?")
    decision = index.match(above_850, threshold=DEFAULT_MATCH_THRESHOLD)
    assert decision.event_id == "ev-850-or-more"
    # The market title has no week; its event's title and the outcome ("850 or above") do.
    assert decision.attempts[0].reasons == ("scored on the market's parent title and outcome",)
    wrong_number = index.score(above_850, events[1])
    assert wrong_number.score == NUMBER_CONFLICT_CAP < DEFAULT_MATCH_THRESHOLD
    assert wrong_number.components["date"] == 1.0

    between = market(markets, "Will Elon Musk post on X between 800 to 849 times in ?")
    assert index.match(between, threshold=DEFAULT_MATCH_THRESHOLD).event_id == "ev-800-849"

    no_such_event = market(markets, "Will Elon Musk post on X between 750 to 799 times in ?")
    decision = index.match(no_such_event, threshold=DEFAULT_MATCH_THRESHOLD)
    assert decision.event_id is None
    assert decision.reason == "below threshold"
    assert [a.score for a in decision.attempts] == [NUMBER_CONFLICT_CAP] * 3


def test_among_events_differing_only_in_the_number_the_right_one_wins() -> None:
    markets = polymarket_event_markets()
    events = [
        event(
            "ev-250-274",
            "Elon Musk tweets 250-274 times, April 4-11",
            datetime(2025, 4, 11, 12, tzinfo=UTC),
        ),
        event(
            "ev-275-299",
            "Elon Musk tweets 275-299 times, April 4-11",
            datetime(2025, 4, 11, 12, tzinfo=UTC),
        ),
    ]
    decisions = SimilarityMatcher().match_many(markets, events, threshold=DEFAULT_MATCH_THRESHOLD)
    linked = {m.outcome: d.event_id for m, d in zip(markets, decisions, strict=True)}
    assert linked["250-274"] == "ev-250-274"
    assert linked["275-299"] == "ev-275-299"
    assert {outcome for outcome, event_id in linked.items() if event_id} == {"250-274", "275-299"}


def test_opposite_comparisons_are_capped_by_the_index_too() -> None:
    above_850 = market(
        kalshi_markets("kalshi_markets_finalized_cents.json"),
        "Will Elon Musk post on X above 850 or above times in ?",
    )
    events = [
        event(
            "ev-850-or-fewer", "Elon Musk posts on X 850 or fewer times, week ending Mar 28 2025"
        ),
        event("ev-850-or-more", "Elon Musk posts on X 850 or more times, week ending Mar 28 2025"),
    ]
    review = EventIndex(events).match(above_850, threshold=1.0, top_k=2)
    assert [a.event_id for a in review.attempts] == ["ev-850-or-more", "ev-850-or-fewer"]
    assert review.attempts[0].score > DEFAULT_MATCH_THRESHOLD
    assert review.attempts[1].score == DIRECTION_CONFLICT_CAP
    assert review.attempts[1].reasons == (
        "numbers differ: market ['850'] vs event ['2025', '28', '850']",
        "opposite comparison: market 'above' vs event 'below'",
    )

    # "A before B" is not "B before A", though every word is the same.
    cuba = market(manifold_markets(), "Will the US attack Cuba before China attacks Taiwan?")
    swapped = event("ev-taiwan-first", "Will China attack Taiwan before the US attacks Cuba?")
    decision = EventIndex([swapped]).match(cuba, threshold=DEFAULT_MATCH_THRESHOLD)
    assert decision.event_id is None
    assert decision.attempts[0].components["token"] == 1.0
    assert decision.attempts[0].score == DIRECTION_CONFLICT_CAP
    assert decision.attempts[0].reasons == ("the two sides of 'before' are swapped",)
    # The one-pair scorer agrees with the index on both.
    assert score(cuba, swapped) == decision.attempts[0]
    assert score(above_850, events[0]).score == DIRECTION_CONFLICT_CAP


def test_an_unrelated_title_gets_a_suggestion_but_no_match() -> None:
    moltbook = market(manifold_markets(), "Will Moltbook survive through feb 2026?")
    events = [
        *gamma_events(),
        event("ev-moltbook-users", "Will Moltbook reach 1 million users in February 2026?"),
    ]
    decision = EventIndex(events).match(moltbook, threshold=DEFAULT_MATCH_THRESHOLD)
    assert decision.event_id is None
    assert decision.method == "none"
    assert decision.reason == "below threshold"
    assert decision.suggested_event_id == "ev-moltbook-users"
    assert decision.confidence == decision.attempts[0].score < DEFAULT_MATCH_THRESHOLD


def test_a_title_sharing_no_word_gets_no_attempts() -> None:
    odd_or_even = market(manifold_markets(), "Fairly Odd or Even")
    decision = EventIndex(gamma_events()).match(odd_or_even, threshold=DEFAULT_MATCH_THRESHOLD)
    assert decision == MatchDecision(None, 0.0, "none", [], "no open event shares a word")


# ---------------------------------------------------------------------------------------
# Close dates


def test_same_day_close_scores_higher_than_a_month_apart_and_a_missing_date_costs_nothing() -> None:
    above_850 = market(
        kalshi_markets("kalshi_markets_finalized_cents.json"),
        "Will Elon Musk post on X above 850 or above times in ?",
    )
    title = "Will Elon Musk post 850 or more times on X in the week ending March 28, 2025?"
    close = above_850.close_time
    assert close == datetime(2025, 3, 28, 16, tzinfo=UTC)
    same_day = score(above_850, event("ev", title, close + timedelta(hours=-4)))
    month_apart = score(above_850, event("ev", title, close + timedelta(days=30)))
    undated_event = score(above_850, event("ev", title))
    undated_market = replace(above_850, close_time=None)
    assert same_day.components["date"] == 1.0
    assert month_apart.components["date"] == 0.0
    assert month_apart.reasons[-1] == "close times 30.0 days apart"
    assert same_day.score > month_apart.score
    assert month_apart.score == DATE_CONFLICT_CAP
    assert "date" not in undated_event.components
    # Left out, not counted as a mismatch: the other components are renormalised.
    assert undated_event.score == score(undated_market, event("ev", title, close)).score
    assert undated_event.score >= DEFAULT_MATCH_THRESHOLD
    assert undated_event.score > month_apart.score


def test_a_weekly_series_repeating_its_title_is_told_apart_by_close_date() -> None:
    # Kalshi's weekly KXELONTWEETS events carry the same title every week.
    titles = {e["event_ticker"]: e["title"] for e in load("kalshi_events.json")["events"]}
    assert titles["KXELONTWEETS-25MAR21"] == titles["KXELONTWEETS-25MAR14"]
    events = [
        event("ev-mar-14", titles["KXELONTWEETS-25MAR14"], datetime(2025, 3, 14, 16, tzinfo=UTC)),
        event("ev-mar-21", titles["KXELONTWEETS-25MAR21"], datetime(2025, 3, 21, 16, tzinfo=UTC)),
    ]
    index = EventIndex(events)
    dated = MarketRef(
        "kalshi",
        "KXELONTWEETS-25MAR21",
        titles["KXELONTWEETS-25MAR21"],
        close_time=datetime(2025, 3, 21, 12, tzinfo=UTC),
    )
    assert index.match(dated, threshold=DEFAULT_MATCH_THRESHOLD).event_id == "ev-mar-21"
    # Closing 28 hours after the event: short of 1, so even at threshold 1 both are shown.
    late = replace(dated, close_time=datetime(2025, 3, 22, 20, tzinfo=UTC))
    review = index.match(late, threshold=1.0, top_k=2)
    assert [a.event_id for a in review.attempts] == ["ev-mar-21", "ev-mar-14"]
    assert review.attempts[0].components["date"] == pytest.approx(1 - (28 / 24 - 1) / 6)
    assert review.attempts[1].score == DATE_CONFLICT_CAP
    assert review.attempts[1].reasons == ("close times 8.2 days apart",)
    decision = index.match(replace(dated, close_time=None), threshold=DEFAULT_MATCH_THRESHOLD)
    assert decision.event_id is None
    assert decision.reason == "ambiguous: the runner-up scores within 0.02"
    assert [a.event_id for a in decision.attempts] == ["ev-mar-14", "ev-mar-21"]
    assert decision.attempts[0].score == decision.attempts[1].score == 1.0


# ---------------------------------------------------------------------------------------
# Score range and symmetry


def every_fixture_market() -> list[MarketRef]:
    return [
        *kalshi_markets("kalshi_markets_finalized_cents.json"),
        *kalshi_markets("kalshi_markets_active_cents.json"),
        *polymarket_event_markets(),
        *polymarket_gamma_markets(),
        *manifold_markets(),
        *predictit_contracts(),
        *metaculus_posts(),
    ]


def test_scores_stay_in_the_unit_interval_are_symmetric_and_identical_titles_score_one() -> None:
    # Titles alone: a parent title would give the market side a second text to score on.
    markets = [
        MarketRef(m.source, m.source_event_id, m.title, slug=m.slug, close_time=m.close_time)
        for m in every_fixture_market()[::3]
    ]
    as_events = [
        EventRef(f"ev-{i}", m.title, m.slug or "", m.close_time) for i, m in enumerate(markets)
    ]
    for i, one in enumerate(markets):
        for j, other in enumerate(markets):
            forward = score(one, as_events[j]).score
            backward = score(other, as_events[i]).score
            assert 0.0 <= forward <= 1.0
            assert forward == pytest.approx(backward, abs=1e-9)
        assert score(one, as_events[i]).score >= 0.99


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=80))
def test_any_titles_score_within_the_unit_interval(one: str, other: str) -> None:
    assume(one.strip() and other.strip())
    attempt = score(MarketRef("test", "m", one), EventRef("e", other, "e"))
    assert 0.0 <= attempt.score <= 1.0
    assert all(0.0 <= value <= 1.0 for value in attempt.components.values())
    if normalise_title(one):
        assert score(MarketRef("test", "m", one), EventRef("e", one, "e")).score >= 0.99


# ---------------------------------------------------------------------------------------
# The index against brute force


def corpus_events() -> list[EventRef]:
    """Hand-written events plus a weekly bracket series: more than MAX_CANDIDATES events
    share the Elon Musk markets' words, so candidate pruning really prunes."""
    brackets = [m["yes_sub_title"] for m in load("kalshi_markets_finalized_cents.json")["markets"]]
    weeks = [datetime(2025, 3, day, 16, tzinfo=UTC) for day in (7, 14, 21, 28)] + [
        datetime(2025, 4, 11, 16, tzinfo=UTC)
    ]
    series = [
        event(
            f"ev-week-{week:%m%d}-{bracket}",
            f"Will Elon Musk post {bracket} times on X"
            f" in the week ending {week:%B} {week.day}, 2025?",
            week,
        )
        for week in weeks
        for bracket in brackets
    ]
    rewordings = [
        event(f"ev-reworded-{i}", m.title.removeprefix("Will ").rstrip("?"), m.close_time)
        for i, m in enumerate([*manifold_markets(), *metaculus_posts()][::2])
    ]
    return [*gamma_events(), *kalshi_week_events(), *series, *rewordings]


# Below this, a runner-up suggestion shares no informative word with the market; the index
# does not look for such events (brute force finds some at 0.25 here).
WEAK_SUGGESTION = 0.3


def test_the_index_finds_what_brute_force_scoring_finds() -> None:
    events = corpus_events()
    markets = every_fixture_market()
    index = EventIndex(events)
    elon = market(markets, "Will Elon tweet 250-274 times April 4 - 11?")
    sharing = {e.id for e in events if set(normalise_title(e.title).split()) & {"elon", "musk"}}
    assert len(sharing) > MAX_CANDIDATES  # pruning is exercised
    assert index.match(elon, threshold=DEFAULT_MATCH_THRESHOLD).attempts  # and still finds one
    decisions = index.match_many(markets, threshold=DEFAULT_MATCH_THRESHOLD, top_k=3)
    # At threshold 1 hardly anything is accepted, so nearly every market shows its top 3.
    reviews = index.match_many(markets, threshold=1.0, top_k=3)
    matched: Counter[str] = Counter()
    for ref, decision, review in zip(markets, decisions, reviews, strict=True):
        brute = sorted(
            ((index.score(ref, e), position) for position, e in enumerate(events)),
            key=lambda item: (-item[0].score, item[1]),
        )
        brute = [attempt for attempt, _ in brute if attempt.components["token"] > 0]
        if not brute:
            assert decision.attempts == review.attempts == []
            continue
        assert decision.attempts[0] == review.attempts[0], ref.title
        for rank, (found, expected) in enumerate(zip(review.attempts, brute, strict=False)):
            if rank and expected.score < WEAK_SUGGESTION:
                # Pruned: events sharing only common words ("2025") with the market.
                break
            assert found.event_id == expected.event_id, ref.title
            assert found.score == pytest.approx(expected.score, abs=1e-9)
            assert found.components == pytest.approx(expected.components, abs=1e-9)
            assert found.reasons == expected.reasons
        if review.event_id is None:
            strong = [a for a in brute if a.score >= WEAK_SUGGESTION]
            assert min(3, len(strong)) <= len(review.attempts) <= 3
        if decision.event_id is not None:
            matched[ref.source] += 1
            assert decision.event_id == brute[0].event_id
            assert brute[0].score >= DEFAULT_MATCH_THRESHOLD
            assert len(brute) == 1 or brute[0].score - brute[1].score >= 0.02
        if ref.source_event_id.startswith("KXELONTWEETS-25MAR28-"):
            # Each week-ending-March-28 bracket finds its own bracket event; "850 or above" and
            # "800 to 849" have two equally good events (the series and kalshi_week_events).
            if ref.outcome in ("850 or above", "800 to 849"):
                assert decision.reason == "ambiguous: the runner-up scores within 0.02"
            else:
                assert decision.event_id == f"ev-week-0328-{ref.outcome}"
        if ref.source_event_id.startswith("KXELONTWEETS-25APR11-"):
            # No parent title: "…above 850 or above times in ?" lacks the week's numbers.
            assert decision.event_id is None
            assert decision.attempts[0].score == NUMBER_SUBSET_CAP
    assert matched == {"kalshi": 11, "polymarket": 8, "manifold": 10, "metaculus": 5}


# ---------------------------------------------------------------------------------------
# Interfaces and bad input


def test_similarity_matcher_is_a_matcher_and_keeps_market_order() -> None:
    class FirstEventMatcher:
        """A stand-in pluggable `ai` matcher."""

        def match_many(self, markets, events, *, threshold):
            return [MatchDecision(events[0].id, 1.0, "similarity") for _ in markets]

    assert isinstance(SimilarityMatcher(), Matcher)
    assert isinstance(FirstEventMatcher(), Matcher)
    markets = polymarket_gamma_markets()[::-1]
    decisions = SimilarityMatcher(top_k=1).match_many(markets, gamma_events(), threshold=0.8)
    assert [d.event_id for d in decisions][:3] == ["ev-gta", "ev-brazil", "ev-budget-5"]
    assert all(len(d.attempts) <= 1 for d in decisions)


def test_an_attempt_serialises_for_the_review_queue() -> None:
    five = market(polymarket_gamma_markets(), "Will Elon cut the budget by at least 5% in 2025?")
    attempt = score(
        five, event("ev-budget-10", "Elon cuts the budget by at least 10% in 2025", END_FEB_2026)
    )
    as_json = json.loads(json.dumps(attempt.as_json()))
    assert as_json["event_id"] == "ev-budget-10"
    assert as_json["score"] == 0.4
    assert set(as_json["components"]) == {"token", "char", "slug", "date", "weighted", "cap"}
    assert as_json["components"]["date"] == 1.0
    assert as_json["reasons"] == ["numbers differ: market ['2025', '5'] vs event ['10', '2025']"]
    assert isinstance(attempt, MatchAttempt)


def test_market_ref_from_a_normalised_record() -> None:
    raw = load("kalshi_markets_active_cents.json")["markets"][0]
    record = NormalisedRecord(
        source="kalshi",
        source_event_id=raw["ticker"],
        signal_type="MARKET_PRICE",
        value=0.01,
        fetched_at=datetime(2025, 4, 5, 12, tzinfo=UTC),
        market=MarketFacts(
            title=raw["title"],
            close_time=utc(raw["close_time"]),
            parent_id=raw["event_ticker"],
            outcome=raw["yes_sub_title"],
        ),
    )
    ref = MarketRef.from_record(record, parent_title="Elon Musk posts on X, April 4-11")
    assert ref == MarketRef(
        "kalshi",
        "KXELONTWEETS-25APR11-849",
        "Will Elon Musk post on X above 850 or above times in ?",
        close_time=datetime(2025, 4, 11, 16, tzinfo=UTC),
        parent_title="Elon Musk posts on X, April 4-11",
        outcome="850 or above",
    )


def test_bad_input_is_refused_with_a_clear_error() -> None:
    with pytest.raises(
        ValueError, match="kalshi KXELONTWEETS-25APR11-849 close_time: .* no time zone"
    ):
        MarketRef("kalshi", "KXELONTWEETS-25APR11-849", "t", close_time=datetime(2025, 4, 11, 16))
    with pytest.raises(ValueError, match="manifold abc: market has no title to match on"):
        MarketRef("manifold", "abc", "  ")
    with pytest.raises(ValueError, match="prediction_events ev-1: event has an empty title"):
        EventRef("ev-1", "", "slug")
    with pytest.raises(ValueError, match="prediction_events ev-1 resolution_date"):
        EventRef("ev-1", "title", "slug", close_time=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="prediction_events ev-gta: listed twice"):
        EventIndex([*gamma_events(), gamma_events()[5]])
    index = EventIndex(gamma_events())
    gta = market(polymarket_gamma_markets(), "Will GTA 6 cost $100+?")
    for threshold in (0.0, 1.5):
        with pytest.raises(ValueError, match="match threshold must be in"):
            index.match(gta, threshold=threshold)
    with pytest.raises(ValueError, match="top_k must be at least 1"):
        index.match(gta, threshold=0.8, top_k=0)
    with pytest.raises(ValueError, match="match method 'fuzzy' is not one of"):
        MatchDecision(None, 0.5, "fuzzy")
