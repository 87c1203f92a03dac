"""Incremental clustering of items into stories, and related links between stories (pure).

Spec of the heuristics (thresholds in ``policy.Thresholds``):

1. Items are added one at a time in (published_at, id) order; an item joins an existing story or
   founds a new one, and is never moved by later items (editors can, through overrides). The
   same items in the same order always give the same stories.
2. Blocking: an inverted index maps anchors to the items carrying them — identity keys (URL,
   guid, an outlet's cross-locale article id), declared links, image URLs, figures (bucketed),
   entities, MinHash bands. Only items within ``window_hours`` that share an anchor are
   candidates. Each shared anchor adds its weight, scaled down by how many items carry it
   (rarity); anchors carried by more than ``max_postings`` items propose nobody; identity,
   declared links, images and MinHash bands always propose. The ``max_candidates`` items with
   the most weight (at least ``min_candidate_hits``) are scored, and after them items that share
   a figure or a declared link, image or cite with the newcomer, until ``max_candidates`` such
   items are scored: a day of look-alike reports (one template, other numbers) shares more words
   with a newcomer than its translation does, and must not crowd the translation out. A
   candidate whose figures (as the index counts them) cannot cover ``min_figures`` of the
   newcomer's is dropped unless it shares a declared link, image or cite: it could not merge.
   Items published more than two windows before the newest one are forgotten (memory stays
   bounded).
3. Declared identity merges outright: the same article (URL, guid, article id), a link to the
   original (``links["original"]``, ``<source>``, hreflang alternates) or the same declared
   original.
4. Otherwise a story is a merge candidate when some member pairs with the newcomer well
   enough (``similarity.compare``; the costly order of anchors only for pairs whose score could
   still reach a threshold): score ≥ ``merge`` with ``min_mass`` shared anchor weight;
   or the same image URL with score ≥ ``merge_with_image``; or a body link between the two with
   score ≥ ``merge_with_cite``; or a same-language near-duplicate text whose figures agree
   (a template filled with another day's numbers is another article).
5. Guards on content merges — a missed merge is better than a false one:
   - one version per locale per story, unless the newcomer is a near-duplicate of it;
   - complete link: every member with anchors must score ≥ ``complete_link``, so stories do
     not grow by chaining;
   - a headline-figure clash with any member vetoes the merge.
6. The best candidate story wins (declared identity first, then score; ties go to the older
   story). Stories closed by an editor's split take no newcomers.
7. Related: two stories are linked (never merged) when an item of one and an item of the other,
   published within ``related_hours``, share ``related`` or more anchor weight, each anchor
   weighted by its rarity in the window — the sum the blocking index already made, so related
   links cost no pair comparison; each story keeps its ``related_per_story`` strongest.
"""

from __future__ import annotations

import gc
import heapq
from array import array
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aggregator.dedupe.features import Features
from aggregator.dedupe.numbers import buckets_near
from aggregator.dedupe.policy import DEFAULT, Thresholds
from aggregator.dedupe.similarity import PairScore, compare, finish, with_layout


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector off while a batch is clustered, back on (as it was) after.

    Clustering allocates many small objects that hold no reference cycles, and the collector
    would rescan the whole growing heap (every item's features, every related link) over and
    over: about a tenth of the time at 30k items, growing with the batch."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass(frozen=True)
class Assignment:
    """Where one item went, and why."""

    doc_id: int
    story: int
    kind: str
    """``new`` | ``merge``."""
    matched_doc: int | None = None
    score: float = 0.0
    threshold: float = 0.0
    signals: dict[str, Any] = field(default_factory=dict)


@dataclass
class StoryState:
    key: int
    order: int
    members: list[Features] = field(default_factory=list)
    closed: bool = False

    def locales(self) -> set[str]:
        return {m.doc.locale for m in self.members}


def related_signals(link: RelatedLink, features: Mapping[int, Features]) -> dict[str, Any]:
    """Why two stories are linked: the two items that linked them (``link.items``) and, when their
    features are at hand, the anchors they share. Worked out only for the links that are kept."""
    a_id, b_id = link.items
    out: dict[str, Any] = {"score": link.score, "items": [a_id, b_id]}
    a, b = features.get(a_id), features.get(b_id)
    if a is not None and b is not None:
        out["hours"] = round(abs(a.ts - b.ts) / 3600.0, 2)
        out["shared"] = sorted(a.anchor_weights.keys() & b.anchor_weights.keys())[:20]
        out["figures"] = len(a.figure_values & b.figure_values)
    return out


_PLAIN, _FIGURE, _BAND = 0, 1, 2
"""Kinds of query keys: figures have their own ``max_figure_postings``; MinHash bands are not anchors."""


@dataclass(frozen=True)
class Blocking:
    """What the index proposes for one newcomer."""

    candidates: list[int]
    """Items worth a full comparison: they may merge with the newcomer."""
    related: dict[int, float]
    """Item published within ``related_hours`` → shared anchor weight (at least ``related``), each
    anchor weighted by its rarity in the window."""


@dataclass(frozen=True)
class RelatedLink:
    score: float
    items: tuple[int, int]
    """The newcomer and the item of the other story whose shared anchors made the link."""


class Clusterer:
    """Holds the stories of the current time window and assigns newcomers to them.

    Memory is bounded by the window: an item published more than two windows before the newest
    one leaves the index, ``docs`` and its story's member list (``story_of`` keeps its story id,
    ``related`` its links); a story whose members all left is forgotten.
    """

    def __init__(self, thresholds: Thresholds = DEFAULT) -> None:
        self.t = thresholds
        self.stories: dict[int, StoryState] = {}
        self.story_of: dict[int, int] = {}
        self.docs: dict[int, Features] = {}
        self._postings: dict[str, array[int]] = {}
        """Index key → ordinals (see ``_ord``) of the items carrying it, in placement order."""
        self._ord: dict[int, int] = {}
        """Item → its placement ordinal: postings hold ordinals so that one newcomer's postings are
        gathered, window-filtered and summed with numpy (``_candidates``)."""
        self._next_ord = 0
        self._ord_base = 0
        """The ordinal at index 0 of the arrays below (ordinals before it all left the window)."""
        self._ord_ts = np.zeros(1024)
        self._ord_doc = np.zeros(1024, dtype=np.int64)
        self._ord_alive = np.zeros(1024, dtype=bool)
        self._doc_keys: dict[int, tuple[str, ...]] = {}
        self._by_time: list[tuple[float, int]] = []
        self._in_order = True
        """Every item so far came no earlier than the one before: postings are sorted by time."""
        self._next_key = -1
        self._order = 0
        self.related: dict[tuple[int, int], RelatedLink] = {}
        self._window = thresholds.window_hours * 3600.0
        self._latest = float("-inf")
        self._figure_key_cache: dict[tuple[float, float], tuple[str, ...]] = {}

    # -- state ---------------------------------------------------------------------------------

    def new_story_key(self) -> int:
        key = self._next_key
        self._next_key -= 1
        return key

    def _story(self, key: int) -> StoryState:
        story = self.stories.get(key)
        if story is None:
            self._order += 1
            story = StoryState(key, self._order)
            self.stories[key] = story
        return story

    def seed(self, f: Features, story_key: int, closed: bool = False) -> None:
        """An item already in a story (from an earlier run): indexed, never re-decided."""
        story = self._story(story_key)
        story.closed = story.closed or closed
        self._place(f, story, self._keys(f, self._bands(f)))

    def close(self, story_key: int) -> None:
        """An editor split this story off: it takes no newcomers."""
        self._story(story_key).closed = True

    def _place(self, f: Features, story: StoryState, keys: list[str]) -> None:
        doc_id = f.doc.id
        self.docs[doc_id] = f
        self.story_of[doc_id] = story.key
        story.members.append(f)
        if f.ts < self._latest:
            self._in_order = False
        else:
            self._latest = f.ts
        o = self._new_ord(doc_id, f.ts)
        postings = self._postings
        for key in keys:
            p = postings.get(key)
            if p is None:
                postings[key] = array("q", (o,))
            else:
                p.append(o)
        self._doc_keys[doc_id] = tuple(keys)
        heapq.heappush(self._by_time, (f.ts, doc_id))

    def _new_ord(self, doc_id: int, ts: float) -> int:
        """The next ordinal, recorded for ``doc_id``; the arrays drop the ordinals that left the
        window before they grow (memory stays bounded by the window)."""
        o = self._next_ord
        i = o - self._ord_base
        size = len(self._ord_ts)
        if i == size:
            alive = self._ord_alive
            first = int(alive.argmax()) if alive.any() else size
            if first >= size // 2:
                keep = size - first
                for arr in (self._ord_ts, self._ord_doc, alive):
                    arr[:keep] = arr[first:]
                    arr[keep:] = 0
                self._ord_base += first
            else:
                self._ord_ts = np.concatenate([self._ord_ts, np.zeros(size)])
                self._ord_doc = np.concatenate([self._ord_doc, np.zeros(size, dtype=np.int64)])
                self._ord_alive = np.concatenate([alive, np.zeros(size, dtype=bool)])
            i = o - self._ord_base
        self._ord_ts[i] = ts
        self._ord_doc[i] = doc_id
        self._ord_alive[i] = True
        self._ord[doc_id] = o
        self._next_ord = o + 1
        return o

    def _evict(self, horizon: float) -> None:
        """Forget every item published before ``horizon``: it can no longer be a candidate."""
        by_time = self._by_time
        postings = self._postings
        while by_time and by_time[0][0] < horizon:
            _, doc_id = heapq.heappop(by_time)
            f = self.docs.pop(doc_id)
            o = self._ord.pop(doc_id)
            self._ord_alive[o - self._ord_base] = False
            for key in self._doc_keys.pop(doc_id):
                p = postings[key]
                if p[0] == o:
                    del p[0]
                else:
                    p.remove(o)
                if not p:
                    del postings[key]
            story = self.stories.get(self.story_of[doc_id])
            if story is not None:
                story.members = [m for m in story.members if m is not f]
                if not story.members:
                    del self.stories[story.key]

    def _bands(self, f: Features) -> list[str]:
        """MinHash band keys: same-language near-duplicates share at least one."""
        if f.minhash is None:
            return []
        bands = self.t.minhash_bands
        rows = len(f.minhash) // bands
        mh, fam = f.minhash, f.near_family
        return [
            f"mh:{fam}:{band}:{hash(mh[band * rows : (band + 1) * rows]) & 0xFFFFFFFF}"
            for band in range(bands)
        ]

    def _figure_keys(self, value: float, tolerance: float) -> tuple[str, ...]:
        """``f:`` index keys of ``buckets_near(value, tolerance)``, remembered: the versions of a
        story carry the same figures."""
        cache = self._figure_key_cache
        keys = cache.get((value, tolerance))
        if keys is None:
            if len(cache) >= 1 << 16:
                cache.clear()
            keys = cache[(value, tolerance)] = tuple("f:" + b for b in buckets_near(value, tolerance))
        return keys

    def _keys(self, f: Features, bands: list[str]) -> list[str]:
        keys = ["id:" + k for k in f.identity]
        keys += ["decl:" + u for u in f.declared]
        keys += ["cite:" + u for u in f.cites]
        if f.image:
            keys.append("img:" + f.image)
        for value, weight in f.figures:
            if weight >= 0.5:
                keys += self._figure_keys(value, 0.0)
        floor = self.t.index_entity_weight
        keys += ["e:" + key for key, weight in f.entities.items() if weight >= floor]
        keys += ["e:" + key for key in f.names]
        keys += bands
        return keys

    def _query_keys(self, f: Features, bands: list[str]) -> list[tuple[str, float, int]]:
        """(index key, weight, ``_PLAIN`` | ``_FIGURE`` | ``_BAND``) to look up: identity and declared
        keys in both directions."""
        out: list[tuple[str, float, int]] = []
        for k in f.identity:
            out += [("id:" + k, 100.0, _PLAIN), ("decl:" + k, 100.0, _PLAIN), ("cite:" + k, 5.0, _PLAIN)]
        for u in f.declared:
            out += [("id:" + u, 100.0, _PLAIN), ("decl:" + u, 100.0, _PLAIN)]
        out += [("id:" + u, 5.0, _PLAIN) for u in f.cites]
        if f.image:
            out.append(("img:" + f.image, 5.0, _PLAIN))
        tol = self.t.figure_tolerance
        for value, weight in f.figures:
            if weight >= 0.5:
                out += [(key, weight, _FIGURE) for key in self._figure_keys(value, tol)]
        floor = self.t.index_entity_weight
        out += [("e:" + key, weight, _PLAIN) for key, weight in f.entities.items() if weight >= floor]
        out += [("e:" + key, weight * 0.5, _PLAIN) for key, weight in f.names.items()]
        out += [(b, 1.0, _BAND) for b in bands]
        return out

    def _candidates(self, f: Features, query: list[tuple[str, float, int]]) -> Blocking:
        t = self.t
        max_postings, rare = t.max_postings, t.rare_postings
        max_figure_postings = t.max_figure_postings
        # Per walked key: how many postings, and what each of its items adds to ``hits`` (the
        # weight scaled by rarity), to ``other`` (the part from keys that are not anchors:
        # identity, links, images, MinHash bands; taken back out of ``hits`` for the related
        # weight, which counts anchors only), to ``figures`` (a figure's own weight), whether it
        # marks the item ``declared`` (shares a declared link, image or cite) and whether it is
        # exempt from the window (declared identity).
        ords: array[int] = array("q")
        rows: list[tuple[int, float, float, float, float, float]] = []
        unseen_figures = 0.0
        seen_keys: set[str] = set()
        postings_of = self._postings
        any_other = any_figure = any_declared = any_exempt = False
        for key, weight, kind in query:
            if key in seen_keys:
                continue
            seen_keys.add(key)
            postings = postings_of.get(key)
            if not postings:
                continue
            n = len(postings)
            if weight >= 100.0:
                rows.append((n, weight, weight, 0.0, 1.0, 1.0))
                any_other = any_declared = any_exempt = True
            elif weight < 5.0:
                scaled = weight * rare / n if n > rare else weight  # rarity in the window
                if kind == _FIGURE:
                    if n > max_figure_postings:
                        unseen_figures += weight
                        continue
                    rows.append((n, scaled, 0.0, weight, 0.0, 0.0))
                    any_figure = True
                else:
                    if n > max_postings:
                        continue
                    if kind == _BAND:
                        rows.append((n, scaled, scaled, 0.0, 0.0, 0.0))
                        any_other = True
                    else:
                        rows.append((n, scaled, 0.0, 0.0, 0.0, 0.0))
            elif kind == _FIGURE:
                rows.append((n, weight, weight, weight, 0.0, 0.0))
                any_other = any_figure = True
            else:
                rows.append((n, weight, weight, 0.0, 1.0, 0.0))
                any_other = any_declared = True
            ords.extend(postings)
        if not rows:
            return Blocking([], {})
        # Every posting entry of every walked key, in key order: ``np.bincount`` sums each item's
        # weights in that order, as a loop over the keys would (the same floats to the last bit).
        table = np.array(rows)
        row_of = np.repeat(np.arange(len(rows)), table[:, 0].astype(np.intp))
        index = np.frombuffer(ords, dtype=np.int64) - self._ord_base
        ts = self._ord_ts[index]
        fts, window = f.ts, self._window
        # The window as bounds while items came in time order, as a distance otherwise (the two
        # computations the index has always used for the two cases).
        in_order = self._in_order
        keep = (ts >= fts - window) & (ts <= fts + window) if in_order else np.abs(ts - fts) <= window
        if any_exempt:
            keep |= table[row_of, 5] > 0
        index, row_of = index[keep], row_of[keep]
        size = self._next_ord - self._ord_base

        def total(column: int) -> np.ndarray:
            return np.bincount(index, table[row_of, column], size)

        hits = total(1)
        min_hits, floor = t.min_candidate_hits, t.related
        present = np.bincount(index, None, size) > 0 if min(min_hits, floor) <= 0 else None
        # An item no walked key found has ``hits`` 0: ``present`` matters only for a bar at 0 or below.
        local = np.flatnonzero(hits >= min_hits if present is None else present & (hits >= min_hits))
        doc_ids = self._ord_doc[local]
        ranked = np.lexsort((doc_ids, -hits[local]))
        # The best ``max_candidates``; then items that share a figure (or a declared link, image or
        # cite) ranked below them, up to ``max_candidates`` of those in all: on a busy day a dozen
        # look-alike reports (a template filled with other numbers) share more names with a
        # newcomer than its translation does, but only the translation shares its figures.
        top = t.max_candidates
        out: list[tuple[int, int]] = []
        if len(ranked):
            figures = total(3) if any_figure else np.zeros(size)
            declared = total(4) > 0 if any_declared else np.zeros(size, dtype=bool)
            strong = declared | (figures > 0)
            ranked_local = local[ranked].tolist()
            ranked_docs = doc_ids[ranked].tolist()
            out = list(zip(ranked_docs[:top], ranked_local[:top], strict=True))
            room = top - sum(1 for _, i in out if strong[i])
            for d, i in zip(ranked_docs[top:], ranked_local[top:], strict=True):
                if room <= 0:
                    break
                if strong[i]:
                    out.append((d, i))
                    room -= 1
            # A content merge needs ``min_figures`` of the newcomer's figures found in the other
            # item (when both carry figures): bounded above by the heavy figures the index found,
            # plus the light ones it does not index, plus those behind postings too long to walk.
            mass = f.figure_mass
            if mass >= 0.5 and out:
                light = sum(w for _, w in f.figures if w < 0.5) + unseen_figures
                need = t.min_figures * mass - light - 1e-9
                docs = self.docs
                out = [
                    (d, i) for d, i in out if declared[i] or figures[i] >= need or docs[d].figure_mass < 0.5
                ]
        related = hits - total(2) if any_other else hits
        bar = (hits >= floor) & (related >= floor)
        bar &= np.abs(self._ord_ts[:size] - fts) <= t.related_hours * 3600.0
        linked = np.flatnonzero(bar if present is None else present & bar)
        return Blocking(
            [d for d, _ in out],
            dict(zip(self._ord_doc[linked].tolist(), related[linked].tolist(), strict=True)),
        )

    # -- decisions -------------------------------------------------------------------------------

    def add(self, f: Features) -> Assignment:
        """Assign one new item to a story (existing or new) and update related links."""
        self._evict(self._latest - 2 * self._window)
        bands = self._bands(f)
        blocking = self._candidates(f, self._query_keys(f, bands))
        cand_docs = blocking.candidates
        # Orders of anchors are computed only for pairs that may merge or link (``finish``).
        pairs: dict[int, PairScore] = {d: compare(f, self.docs[d], self.t, full=False) for d in cand_docs}
        by_story: dict[int, list[int]] = defaultdict(list)
        for d in cand_docs:
            by_story[self.story_of[d]].append(d)
        options: list[tuple[tuple[int, float, int], int, int, PairScore, float]] = []
        for skey, docs in by_story.items():
            story = self.stories[skey]
            if story.closed:
                continue
            verdict = self._judge(f, story, docs, pairs)
            if verdict is not None:
                rank, matched, pair, threshold = verdict
                options.append(((rank, -pair.score, story.order), skey, matched, pair, threshold))
        if options:
            options.sort(key=lambda o: o[0])
            _, skey, matched, pair, threshold = options[0]
            story = self.stories[skey]
            self._place(f, story, self._keys(f, bands))
            result = Assignment(
                f.doc.id,
                skey,
                "merge",
                matched,
                1.0 if pair.declared else pair.score,
                threshold,
                pair.signals(),
            )
        else:
            story = self._story(self.new_story_key())
            self._place(f, story, self._keys(f, bands))
            result = Assignment(f.doc.id, story.key, "new")
        self._relate(f, story.key, blocking.related)
        return result

    def _judge(
        self, f: Features, story: StoryState, docs: list[int], pairs: dict[int, PairScore]
    ) -> tuple[int, int, PairScore, float] | None:
        """(rank, matched member, its pair score, threshold) when ``f`` may join ``story``."""
        t = self.t
        best: tuple[int, int, PairScore, float] | None = None
        for d in sorted(docs):
            p = pairs[d]
            if p.declared:
                p = pairs[d] = finish(p, f, self.docs[d], t, layout=False)
                cand = (0, d, p, 1.0)
            else:
                threshold = self._threshold(p)
                if threshold is None or p.score < threshold:
                    continue
                if not p.complete:
                    p = pairs[d] = finish(p, f, self.docs[d], t, layout=False)
                    threshold = self._threshold(p)
                    if threshold is None or p.score < threshold:
                        continue
                # The paragraph layout last, and only where it can still veto: the costliest part.
                if p.layout is None and self._needs_layout(p):
                    p = pairs[d] = with_layout(p, f, self.docs[d], t)
                    threshold = self._threshold(p)
                    if threshold is None or p.score < threshold:
                        continue
                cand = (1, d, p, threshold)
            if best is None or (cand[0], -cand[2].score) < (best[0], -best[2].score):
                best = cand
        if best is None:
            return None
        if best[0] == 0:
            return best
        # Content merge: guards against every member (complete link).
        for member in story.members:
            p = pairs.get(member.doc.id) or compare(f, member, t, full=False)
            if p.declared:
                continue
            if p.clash:
                return None
            near = self.near_duplicate(p)
            if member.doc.locale == f.doc.locale and not near:
                return None
            if near or p.image:
                continue
            if p.mass >= 1.0:
                if not p.complete and p.score >= t.complete_link:
                    p = finish(p, f, member, t, layout=False)
                if p.score < t.complete_link:
                    return None
        return best

    def _needs_layout(self, p: PairScore) -> bool:
        """Whether the paragraph layout decides this pair: on content alone, or with a shared
        image or cite when ``image_layout`` asks for it; never for near-duplicates."""
        t = self.t
        if self.near_duplicate(p):
            return False
        if (p.cite or p.image) and p.mass >= t.min_mass_with_image:
            return t.image_layout > 0
        return True

    def near_duplicate(self, p: PairScore) -> bool:
        """Near-identical text whose figures agree (a template filled with other numbers is not)."""
        if p.near_duplicate < self.t.near_duplicate:
            return False
        return p.figures is None or p.figures >= self.t.near_duplicate_figures

    def _threshold(self, p: PairScore) -> float | None:
        """The score this pair must reach to merge, given its strongest non-content signal."""
        t = self.t
        if p.clash:
            return None
        if self.near_duplicate(p):
            return 0.0
        if p.cite and p.mass >= t.min_mass_with_image and self._same_layout(p, t.image_layout):
            return t.merge_with_cite
        if p.image and p.mass >= t.min_mass_with_image and self._same_layout(p, t.image_layout):
            return t.merge_with_image
        if p.mass >= t.min_mass and self._content_agrees(p):
            return t.merge if p.figures is not None else t.merge_without_figures
        return None

    def _content_agrees(self, p: PairScore) -> bool:
        """Two independent reports of one event share most figures and names one way, seldom
        both ways, and tell the facts in another order: a merge on content alone needs both."""
        t = self.t
        if p.figures is not None:
            if p.figures < t.min_figures:
                return False
            if p.entities is not None and p.figures + p.entities < t.min_coverage:
                return False
        if p.entities_max is not None and p.entities_max < t.min_entities:
            return False
        if not self._same_layout(p, 1.0):
            return False
        return p.order is None or p.order >= t.min_order

    def _same_layout(self, p: PairScore, scale: float) -> bool:
        """The paragraphs follow each other in order (``min_paragraphs`` and ``min_paragraph_order``,
        times ``scale``); true while the layout is not computed yet (``finish`` adds it)."""
        t = self.t
        if p.layout is None:
            return True
        return p.layout[0] >= t.min_paragraphs * scale and p.layout[1] >= t.min_paragraph_order * scale

    def _relate(self, f: Features, story_key: int, related: dict[int, float]) -> None:
        """Link ``f``'s story to the stories of items that share enough rare anchors with it."""
        best: dict[int, tuple[float, int]] = {}
        story_of = self.story_of
        # Per other story, its item with the highest weight (ties: the lowest id).
        for d, score in related.items():
            other = story_of[d]
            if other == story_key:
                continue
            held = best.get(other)
            if held is None or score > held[0] or (score == held[0] and d < held[1]):
                best[other] = (score, d)
        links = self.related
        for other, (score, d) in best.items():
            key = (story_key, other) if story_key < other else (other, story_key)
            old = links.get(key)
            if old is None or score > old.score:
                links[key] = RelatedLink(round(score, 3), (f.doc.id, d))

    def merge_stories(self, src: int, dst: int) -> None:
        """Move every member of ``src`` into ``dst`` (an editor's merge)."""
        if src == dst or src not in self.stories:
            return
        source = self.stories.pop(src)
        target = self._story(dst)
        for m in source.members:
            self.story_of[m.doc.id] = dst
            target.members.append(m)
        for a, b in list(self.related):
            if src in (a, b):
                link = self.related.pop((a, b))
                other = b if a == src else a
                if other != dst:
                    key = (min(dst, other), max(dst, other))
                    if key not in self.related:
                        self.related[key] = link

    def _strongest_by_story(self) -> dict[int, list[tuple[int, RelatedLink]]]:
        """Story → its ``related_per_story`` strongest links (other story, link), strongest first,
        ties to the lower story id."""
        by_story: dict[int, list[tuple[int, RelatedLink]]] = defaultdict(list)
        for (a, b), link in self.related.items():
            by_story[a].append((b, link))
            by_story[b].append((a, link))
        k = self.t.related_per_story
        return {story: heapq.nsmallest(k, links, key=_link_rank) for story, links in by_story.items()}

    def kept_related(self) -> dict[tuple[int, int], RelatedLink]:
        """The links worth storing: each among the ``related_per_story`` strongest of at least one
        of its two stories (a busy event would otherwise tie every story to dozens of others)."""
        keep = {
            (min(story, other), max(story, other))
            for story, links in self._strongest_by_story().items()
            for other, _ in links
        }
        return {pair: self.related[pair] for pair in sorted(keep)}

    def related_of(self, story_key: int) -> list[tuple[int, RelatedLink]]:
        """The strongest related links of one story."""
        return self._strongest_by_story().get(story_key, [])


def _link_rank(entry: tuple[int, RelatedLink]) -> tuple[float, int]:
    other, link = entry
    return -link.score, other
