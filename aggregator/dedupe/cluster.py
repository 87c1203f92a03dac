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

import heapq
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aggregator.dedupe.features import Features
from aggregator.dedupe.numbers import buckets_near
from aggregator.dedupe.policy import DEFAULT, Thresholds
from aggregator.dedupe.similarity import PairScore, compare, finish


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


def _related_signals(a: Features, b: Features) -> dict[str, Any]:
    """Why two items of different stories are linked: the anchors they share."""
    shared = sorted(a.anchor_weights.keys() & b.anchor_weights.keys())
    return {
        "hours": round(abs(a.ts - b.ts) / 3600.0, 2),
        "shared": shared[:20],
        "figures": len({v for v, _ in a.figures} & {v for v, _ in b.figures}),
    }


@dataclass(frozen=True)
class Blocking:
    """What the index proposes for one newcomer."""

    candidates: list[int]
    """Items worth a full comparison: they may merge with the newcomer."""
    related: dict[int, float]
    """Item → shared anchor weight, each anchor weighted by its rarity in the window."""


@dataclass(frozen=True)
class RelatedLink:
    score: float
    signals: dict[str, Any]


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
        self._postings: dict[str, deque[int]] = {}
        self._ts: dict[int, float] = {}
        self._doc_keys: dict[int, tuple[str, ...]] = {}
        self._by_time: list[tuple[float, int]] = []
        self._in_order = True
        """Every item so far came no earlier than the one before: postings are sorted by time."""
        self._next_key = -1
        self._order = 0
        self.related: dict[tuple[int, int], RelatedLink] = {}
        self._window = thresholds.window_hours * 3600.0
        self._latest = float("-inf")

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
        self._ts[doc_id] = f.ts
        postings = self._postings
        for key in keys:
            p = postings.get(key)
            if p is None:
                postings[key] = deque((doc_id,))
            else:
                p.append(doc_id)
        self._doc_keys[doc_id] = tuple(keys)
        heapq.heappush(self._by_time, (f.ts, doc_id))

    def _evict(self, horizon: float) -> None:
        """Forget every item published before ``horizon``: it can no longer be a candidate."""
        by_time = self._by_time
        postings, ts_of = self._postings, self._ts
        while by_time and by_time[0][0] < horizon:
            _, doc_id = heapq.heappop(by_time)
            f = self.docs.pop(doc_id)
            del ts_of[doc_id]
            for key in self._doc_keys.pop(doc_id):
                p = postings[key]
                if p[0] == doc_id:
                    p.popleft()
                else:
                    p.remove(doc_id)
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

    def _keys(self, f: Features, bands: list[str]) -> list[str]:
        keys = ["id:" + k for k in f.identity]
        keys += ["decl:" + u for u in f.declared]
        keys += ["cite:" + u for u in f.cites]
        if f.image:
            keys.append("img:" + f.image)
        for value, weight in f.figures:
            if weight >= 0.5:
                keys += ["f:" + b for b in buckets_near(value, 0.0)]
        floor = self.t.index_entity_weight
        keys += ["e:" + key for key, weight in f.entities.items() if weight >= floor]
        keys += ["e:" + key for key in f.names]
        keys += bands
        return keys

    def _query_keys(self, f: Features, bands: list[str]) -> list[tuple[str, float]]:
        """(index key, weight) to look up: identity and declared keys in both directions."""
        out: list[tuple[str, float]] = []
        for k in f.identity:
            out += [("id:" + k, 100.0), ("decl:" + k, 100.0), ("cite:" + k, 5.0)]
        for u in f.declared:
            out += [("id:" + u, 100.0), ("decl:" + u, 100.0)]
        out += [("id:" + u, 5.0) for u in f.cites]
        if f.image:
            out.append(("img:" + f.image, 5.0))
        tol = self.t.figure_tolerance
        for value, weight in f.figures:
            if weight >= 0.5:
                out += [("f:" + b, weight) for b in buckets_near(value, tol)]
        floor = self.t.index_entity_weight
        out += [("e:" + key, weight) for key, weight in f.entities.items() if weight >= floor]
        out += [("e:" + key, weight * 0.5) for key, weight in f.names.items()]
        out += [(b, 1.0) for b in bands]
        return out

    def _candidates(self, f: Features, query: list[tuple[str, float]]) -> Blocking:
        t = self.t
        max_postings, rare = t.max_postings, t.rare_postings
        max_figure_postings = t.max_figure_postings
        ts_of, fts, window = self._ts, f.ts, self._window
        lo, hi = fts - window, fts + window
        hits: defaultdict[int, float] = defaultdict(float)
        # Weight from keys that are not anchors (identity, links, images, MinHash bands): taken
        # back out of ``hits`` for the related weight, which counts anchors only.
        other: defaultdict[int, float] = defaultdict(float)
        figures: defaultdict[int, float] = defaultdict(float)
        strong: set[int] = set()
        declared: set[int] = set()
        unseen_figures = 0.0
        seen_keys: set[str] = set()
        in_order = self._in_order
        for key, weight in query:
            if key in seen_keys:
                continue
            seen_keys.add(key)
            postings = self._postings.get(key)
            if not postings:
                continue
            if weight >= 100.0:
                for doc_id in postings:
                    hits[doc_id] += weight
                    other[doc_id] += weight
                declared.update(postings)
                strong.update(postings)
                continue
            n = len(postings)
            figure = key.startswith("f:")
            anchor = weight < 5.0 and not key.startswith("mh:")
            scaled = weight
            if weight < 5.0:
                if n > (max_figure_postings if figure else max_postings):
                    if figure:
                        unseen_figures += weight
                    continue
                if n > rare:
                    scaled = weight * rare / n
            if in_order:
                # Sorted by time: walk back from the newest until the window's start.
                found = []
                for doc_id in reversed(postings):
                    ts = ts_of[doc_id]
                    if ts < lo:
                        break
                    if ts <= hi:
                        hits[doc_id] += scaled
                        found.append(doc_id)
            else:
                found = [doc_id for doc_id in postings if abs(ts_of[doc_id] - fts) <= window]
                for doc_id in found:
                    hits[doc_id] += scaled
            if not anchor:
                for doc_id in found:
                    other[doc_id] += scaled
            if figure:
                for doc_id in found:
                    figures[doc_id] += weight
                strong.update(postings)
            elif weight >= 5.0:
                declared.update(postings)
                strong.update(postings)
        min_hits = t.min_candidate_hits
        ranked = sorted(((-h, d) for d, h in hits.items() if h >= min_hits))
        # The best ``max_candidates``; then items that share a figure (or a declared link, image or
        # cite) ranked below them, up to ``max_candidates`` of those in all: on a busy day a dozen
        # look-alike reports (a template filled with other numbers) share more names with a
        # newcomer than its translation does, but only the translation shares its figures.
        out = [doc_id for _, doc_id in ranked[: t.max_candidates]]
        room = t.max_candidates - sum(1 for d in out if d in strong)
        for _, doc_id in ranked[t.max_candidates :]:
            if room <= 0:
                break
            if doc_id in strong:
                out.append(doc_id)
                room -= 1
        # A content merge needs ``min_figures`` of the newcomer's figures found in the other item
        # (when both carry figures): bounded above by the heavy figures the index found, plus the
        # light ones it does not index, plus those behind postings too long to walk.
        mass = f.figure_mass
        if mass >= 0.5:
            light = sum(w for _, w in f.figures if w < 0.5) + unseen_figures
            need = t.min_figures * mass - light
            docs = self.docs
            out = [
                d
                for d in out
                if d in declared or docs[d].figure_mass < 0.5 or figures.get(d, 0.0) >= need - 1e-9
            ]
        floor = t.related
        related = {d: h - other[d] if d in other else h for d, h in hits.items() if h >= floor}
        return Blocking(out, {d: r for d, r in related.items() if r >= floor})

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
                p = pairs[d] = finish(p, f, self.docs[d], t)
                cand = (0, d, p, 1.0)
            else:
                threshold = self._threshold(p)
                if threshold is None or p.score < threshold:
                    continue
                if not p.complete:
                    p = pairs[d] = finish(p, f, self.docs[d], t)
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
                    p = finish(p, f, member, t)
                if p.score < t.complete_link:
                    return None
        return best

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

    def rarity(self, key: str) -> float:
        """1 for an anchor few items in the window carry, less the more carry it."""
        postings = self._postings.get(key)
        n = len(postings) if postings else 0
        return 1.0 if n <= self.t.rare_postings else self.t.rare_postings / n

    def _relate(self, f: Features, story_key: int, related: dict[int, float]) -> None:
        """Link ``f``'s story to the stories of items that share enough rare anchors with it."""
        t = self.t
        best: dict[int, tuple[float, int]] = {}
        horizon, fts, ts_of, story_of = t.related_hours * 3600.0, f.ts, self._ts, self.story_of
        for d, score in related.items():
            if abs(ts_of[d] - fts) > horizon:
                continue
            other = story_of[d]
            if other == story_key:
                continue
            if other not in best or (score, -d) > (best[other][0], -best[other][1]):
                best[other] = (score, d)
        for other, (score, d) in best.items():
            key = (min(story_key, other), max(story_key, other))
            old = self.related.get(key)
            if old is None or score > old.score:
                self.related[key] = RelatedLink(round(score, 3), _related_signals(f, self.docs[d]))

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

    def related_of(self, story_key: int) -> list[tuple[int, RelatedLink]]:
        """The strongest related links of one story."""
        links = [
            (b if a == story_key else a, link) for (a, b), link in self.related.items() if story_key in (a, b)
        ]
        links.sort(key=lambda x: (-x[1].score, x[0]))
        return links[: self.t.related_per_story]
