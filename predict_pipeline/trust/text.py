"""Narrative text: normalisation, word shingles, near-duplicate clusters of the signals'
narratives (COORDINATED_ACTION, BOT_SENTIMENT and sentiment_authenticity read them)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from predict_pipeline.model import SIGNAL_TYPES
from predict_pipeline.trust.config import NARRATIVE_TYPES, TrustConfig, nanoseconds

_URL = re.compile(r"https?://\S+|www\.\S+")
_NON_WORD = re.compile(r"[\W_]+")  # letters and digits of any script survive


def normalise_text(text: str) -> str:
    """Case-folded, links dropped, punctuation and emoji folded to single spaces."""
    return _NON_WORD.sub(" ", _URL.sub(" ", text.casefold())).strip()


def shingles(text: str, size: int) -> frozenset[str]:
    """The word `size`-grams of a normalised text (the words themselves when shorter)."""
    words = text.split()
    if len(words) < size:
        return frozenset(words)
    return frozenset(" ".join(words[i : i + size]) for i in range(len(words) - size + 1))


def similarity_groups(texts: list[str], threshold: float, size: int) -> np.ndarray:
    """Connected components of the texts whose shingle Jaccard is >= threshold (labels)."""
    sets = [shingles(t, size) for t in texts]
    m = len(texts)
    if m <= _SMALL_GROUP:
        return _small_groups(sets, threshold)
    vocab = {s: i for i, s in enumerate(sorted(set().union(*sets)))}
    if not vocab:
        return np.arange(m)
    rows = np.repeat(np.arange(m), [len(s) for s in sets])
    cols = np.fromiter((vocab[x] for s in sets for x in sorted(s)), dtype=np.int64, count=len(rows))
    member = np.zeros((m, len(vocab)), dtype=np.float32)
    member[rows, cols] = 1.0
    size_of = member.sum(axis=1)
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    for lo in range(0, m, 1024):  # bounded memory for very large groups
        inter = member[lo : lo + 1024] @ member.T
        union = size_of[lo : lo + 1024, None] + size_of[None, :] - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            similar = (inter / union) >= threshold
        i, j = np.nonzero(similar)
        left.append(i + lo)
        right.append(j)
    return _components(m, np.concatenate(left), np.concatenate(right))


# Up to this many texts the pairs are compared one by one (most events have two or three).
_SMALL_GROUP = 16


def _small_groups(sets: list[frozenset[str]], threshold: float) -> np.ndarray:
    """similarity_groups of a few texts, pair by pair: the same float32 Jaccard as the matrix
    form, joined by the same `_components`."""
    pairs = [
        (i, j)
        for i in range(len(sets))
        for j in range(i + 1, len(sets))
        if (union := len(sets[i] | sets[j]))
        and np.float32(len(sets[i] & sets[j])) / np.float32(union) >= threshold
    ]
    left = np.array([i for i, _ in pairs], dtype=np.int64)
    right = np.array([j for _, j in pairs], dtype=np.int64)
    return _components(len(sets), left, right)


def _components(m: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Label of each node = the smallest node of its connected component."""
    labels = np.arange(m)
    while True:
        new = labels.copy()
        np.minimum.at(new, i, labels[j])
        np.minimum.at(new, j, labels[i])
        new = new[new]
        if np.array_equal(new, labels):
            return labels
        labels = new


def narrative_clusters(
    sig: pd.DataFrame, start_ns: int, end_ns: int, config: TrustConfig
) -> pd.DataFrame:
    """Narrative signals of [start - coordination window, end), clustered per event.

    `cluster` is the id of the cluster's earliest signal; `cluster_size` counts the cluster's
    signals inside the interval; `first` marks each cluster's earliest signal.
    """
    since = start_ns - nanoseconds(config.coordination_window)
    rows = sig[
        np.isin(sig["kind"].to_numpy(), [SIGNAL_TYPES.index(t) for t in NARRATIVE_TYPES])
        & (sig["t"].to_numpy() >= since)
        & sig["narrative"].notna().to_numpy()
    ]
    rows = rows[rows["narrative"].astype(str).str.strip() != ""]
    columns = [
        "id",
        "event_id",
        "signal_type",
        "source",
        "origin",
        "value",
        "weight",
        "reliability",
        "t",
        "bucket",
    ]
    rows = rows[columns].copy()
    rows["text"] = [normalise_text(str(n)) for n in sig.loc[rows.index, "narrative"]]
    rows = rows[rows["text"] != ""]  # links or emoji only: nothing to compare
    text_id = rows.groupby(["event_id", "text"], sort=False).ngroup().to_numpy()
    rows["text_id"] = text_id
    label_of = np.arange(int(text_id.max()) + 1 if len(text_id) else 0)
    uniq = rows.drop_duplicates("text_id")[["event_id", "text", "text_id"]]
    many = uniq.groupby("event_id")["text_id"].transform("size") > 1
    multi = uniq[many.to_numpy()]
    # each event's distinct texts in their order, split on arrays (no pandas group per event)
    event_of = pd.factorize(multi["event_id"])[0]
    order = np.argsort(event_of, kind="stable")
    bounds = np.flatnonzero(np.diff(event_of[order])) + 1
    for ids, texts in zip(
        np.split(multi["text_id"].to_numpy()[order], bounds),
        np.split(multi["text"].to_numpy()[order], bounds),
        strict=True,
    ):
        if len(ids) == 0:
            continue
        comp = similarity_groups(list(texts), config.narrative_similarity, config.narrative_shingle)
        label_of[ids] = ids[comp]
    label = label_of[text_id]
    rows["group"] = label
    # rows are in (event_id, t, id) order, so the first row of a group is its earliest signal
    rows["cluster"] = rows.groupby("group")["id"].transform("first")
    rows["first"] = ~rows["group"].duplicated()
    in_interval = rows["bucket"] == 0
    rows["cluster_size"] = in_interval.groupby(rows["group"]).transform("sum").astype("int64")
    return rows.drop(columns=["group", "text_id"])
