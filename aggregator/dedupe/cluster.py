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
   Items published more than two windows before the newcomer being placed are forgotten (memory stays
   bounded).
3. Declared identity merges outright: the same article (URL, guid, article id), a link to the
   original (``links["original"]``, ``<source>``, hreflang alternates) or the same declared
   original.
4. Otherwise a story is a merge candidate when some member pairs with the newcomer well
   enough (``kernels.PairKernel``; the costly order of anchors only for pairs whose score could
   still reach a threshold): score ≥ ``merge`` with ``min_mass`` shared anchor weight;
   or the same image URL with score ≥ ``merge_with_image``; or a body link between the two with
   score ≥ ``merge_with_cite``; or a same-language near-duplicate text whose figures agree
   (a template filled with another day's numbers is another article).
5. Guards on content merges — a missed merge is better than a false one:
   - one version per locale per story, unless the newcomer is a near-duplicate of it;
   - complete link: every member with anchors must score ≥ ``complete_link``, so stories do
     not grow by chaining;
   - a headline-figure clash with any member vetoes the merge;
   - look-alikes (``veto``): same-language near-duplicates must agree on figures and entities one
     way at least; one outlet's items a day apart merge only as near-duplicates (its next daily
     wrap); each side naming another entity of one kind (another exchange, company, token) vetoes.
6. The best candidate story wins (declared identity first, then score; ties go to the older
   story). Stories closed by an editor's split take no newcomers.
7. Related: two stories are linked (never merged) when an item of one and an item of the other,
   published within ``related_hours``, share ``related`` or more anchor weight, each anchor
   weighted by its rarity in the window — the sum the blocking index already made, so related
   links cost no pair comparison; each story keeps its ``related_per_story`` strongest (the
   API serves as many: ``policy.RELATED_PER_STORY``).
"""

from __future__ import annotations

import gc
import heapq
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, get_args

from aggregator.dedupe.blocking import Keys, Related, blocking_keys, keys_for
from aggregator.dedupe.features import Features
from aggregator.dedupe.kernels import Index, PairKernel
from aggregator.dedupe.lexicon import default_lexicon
from aggregator.dedupe.numbers import close
from aggregator.dedupe.policy import DEFAULT, Thresholds
from aggregator.dedupe.similarity import PairScore


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


AssignmentKind = Literal["new", "merge", "editor"]
"""``new``: the item founds a story; ``merge``: it joins the story of ``matched_doc``; ``editor``:
an editor's override placed it (``run_dedupe``: a split item stands alone, a merged one joins)."""
ASSIGNMENT_KINDS: tuple[AssignmentKind, ...] = get_args(AssignmentKind)


@dataclass(frozen=True)
class Assignment:
    """Where one item went, and why (stored as its ``MergeDecision``)."""

    doc_id: int
    story: int
    kind: AssignmentKind
    matched_doc: int | None = None
    score: float = 0.0
    threshold: float = 0.0
    signals: dict[str, Any] = field(default_factory=dict)


@dataclass
class StoryState:
    key: int
    order: int
    members: dict[int, Features] = field(default_factory=dict)
    """Item id → features of the members still in the window, in placement order."""
    closed: bool = False


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


class RelatedLink(NamedTuple):
    """A link between two stories (a named tuple: a busy window makes several per item)."""

    score: float
    items: tuple[int, int]
    """The newcomer and the item of the other story whose shared anchors made the link."""


class Clusterer:
    """Holds the stories of the current time window and assigns newcomers to them.

    Memory is bounded by the window: an item published more than two windows before the newcomer
    being placed (newcomers come in publication order) leaves the index, ``docs`` and its story's member list (``story_of`` keeps its story id,
    ``related`` its links); a story whose members all left is forgotten.
    """

    def __init__(self, thresholds: Thresholds = DEFAULT) -> None:
        self.t = thresholds
        self.stories: dict[int, StoryState] = {}
        self.story_of: dict[int, int] = {}
        self.docs: dict[int, Features] = {}
        self._index = Index()
        self._pairs = PairKernel(thresholds)
        self._ord: dict[int, int] = {}
        """Item → its placement ordinal in the index."""
        self._doc_keys: dict[int, tuple[str, ...]] = {}
        self._by_time: list[tuple[float, int]] = []
        self._next_key = -1
        self._order = 0
        self.related: dict[tuple[int, int], RelatedLink] = {}
        self._window = thresholds.window_hours * 3600.0
        self._latest = float("-inf")
        self._keys_for = keys_for(thresholds)

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
        self._place(f, story, self._blocking(f)[1])

    def close(self, story_key: int) -> None:
        """An editor split this story off: it takes no newcomers."""
        self._story(story_key).closed = True

    def _blocking(self, f: Features) -> Keys:
        """``f``'s index keys and query: as extracted with its features, unless those were made for
        other thresholds."""
        keys = f.blocking
        if keys is None or keys[0] != self._keys_for:
            keys = blocking_keys(f, self.t)
        return keys

    def _place(self, f: Features, story: StoryState, keys: tuple[str, ...]) -> None:
        doc_id = f.doc.id
        self.docs[doc_id] = f
        self.story_of[doc_id] = story.key
        story.members[doc_id] = f
        if f.ts > self._latest:
            self._latest = f.ts
        self._pairs.prepare(f)  # done already for a newcomer; a seeded item is prepared here
        self._ord[doc_id] = self._index.place(doc_id, f.ts, f.figure_mass, story.key, keys)
        self._doc_keys[doc_id] = keys
        heapq.heappush(self._by_time, (f.ts, doc_id))

    def _evict(self, horizon: float) -> None:
        """Forget every item published before ``horizon``: it can no longer be a candidate."""
        by_time = self._by_time
        while by_time and by_time[0][0] < horizon:
            _, doc_id = heapq.heappop(by_time)
            del self.docs[doc_id]
            self._index.remove(self._ord.pop(doc_id), self._doc_keys.pop(doc_id))
            self._pairs.forget(doc_id)
            story = self.stories.get(self.story_of[doc_id])
            if story is not None:
                del story.members[doc_id]
                if not story.members:
                    del self.stories[story.key]

    # -- decisions -------------------------------------------------------------------------------

    def add(self, f: Features) -> Assignment:
        """Assign one new item to a story (existing or new) and update related links."""
        # Relative to the newcomer, not to the newest item held: seeded context may be published up
        # to a window after the run's newest newcomer, and would evict older newcomers before their
        # own versions (published hours later) arrive (a story split, depending on which items a
        # run happened to get).
        self._evict(f.ts - 2 * self._window)
        keys = self._blocking(f)
        kernel = self._pairs
        kernel.prepare(f)
        light = sum(w for _, w in f.figures if w < 0.5)
        cand_docs, related = self._index.candidates(keys[2], f.ts, self._window, f.figure_mass, light, self.t)
        # Orders of anchors are computed only for pairs that may merge or link (``finish``).
        pairs = kernel.compare_many(f, cand_docs, self.docs)
        by_story: dict[int, list[int]] = defaultdict(list)
        for d in cand_docs:
            by_story[self.story_of[d]].append(d)
        options: list[tuple[tuple[int, float, int], int, int, PairScore, float]] = []
        for skey, members in by_story.items():
            story = self.stories[skey]
            if story.closed:
                continue
            verdict = self._judge(f, story, members, pairs)
            if verdict is not None:
                rank, matched, pair, threshold = verdict
                options.append(((rank, -pair.score, story.order), skey, matched, pair, threshold))
        if options:
            options.sort(key=lambda o: o[0])
            _, skey, matched, pair, threshold = options[0]
            story = self.stories[skey]
            self._place(f, story, keys[1])
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
            self._place(f, story, keys[1])
            result = Assignment(f.doc.id, story.key, "new", signals=self._nearest(f, pairs))
        self._relate(f, story.key, related)
        return result

    def _nearest(self, f: Features, pairs: dict[int, PairScore]) -> dict[str, Any]:
        """For an item that founded a story: its best-scoring candidate and the bar that candidate
        had to reach (the plain content bar when no merge was possible at all), so editors can
        review the non-merges that came closest (``aggregator.editorial.review``)."""
        if not pairs:
            return {}
        doc, p = max(pairs.items(), key=lambda kv: (kv[1].score, -kv[0]))
        threshold = self._threshold(p, f, self.docs[doc])
        bar = self.t.merge if threshold is None else threshold
        return {"nearest": {"item": doc, "score": round(p.score, 4), "threshold": bar}}

    def _judge(
        self, f: Features, story: StoryState, docs: list[int], pairs: dict[int, PairScore]
    ) -> tuple[int, int, PairScore, float] | None:
        """(rank, matched member, its pair score, threshold) when ``f`` may join ``story``."""
        t = self.t
        kernel = self._pairs
        best: tuple[int, int, PairScore, float] | None = None
        for d in sorted(docs):
            p = pairs[d]
            if p.declared:
                p = pairs[d] = kernel.finish(p, f, self.docs[d])
                cand = (0, d, p, 1.0)
            else:
                other = self.docs[d]
                threshold = self._threshold(p, f, other)
                if threshold is None or p.score < threshold:
                    continue
                if not p.complete:
                    p = pairs[d] = kernel.finish(p, f, other)
                    threshold = self._threshold(p, f, other)
                    if threshold is None or p.score < threshold:
                        continue
                # The paragraph layout last, and only where it can still veto: the costliest part.
                if p.layout is None and self._needs_layout(p, f, other):
                    p = pairs[d] = kernel.with_layout(p, f, other)
                    threshold = self._threshold(p, f, other)
                    if threshold is None or p.score < threshold:
                        continue
                if veto(p, f, other, t) is not None:
                    continue
                cand = (1, d, p, threshold)
            if best is None or (cand[0], -cand[2].score) < (best[0], -best[2].score):
                best = cand
        if best is None:
            return None
        if best[0] == 0:
            return best
        # Content merge: guards against every member (complete link).
        for member in story.members.values():
            p = pairs.get(member.doc.id) or kernel.compare(f, member)
            if p.declared:
                continue
            if p.clash or veto(p, f, member, t) is not None:
                return None
            near = self.near_duplicate(p, f, member)
            if member.doc.locale == f.doc.locale and not near:
                return None
            if near or p.image:
                continue
            if p.mass >= 1.0:
                if not p.complete and p.score >= t.complete_link:
                    p = kernel.finish(p, f, member)
                if p.score < t.complete_link:
                    return None
        return best

    def _needs_layout(self, p: PairScore, a: Features, b: Features) -> bool:
        """Whether the paragraph layout decides this pair: on content alone, or with a shared
        image or cite when ``image_layout`` asks for it; never for near-duplicates."""
        t = self.t
        if self.near_duplicate(p, a, b):
            return False
        if (p.cite or p.image) and p.mass >= t.min_mass_with_image:
            return t.image_layout > 0
        return True

    def near_duplicate(self, p: PairScore, a: Features, b: Features) -> bool:
        """Near-identical text whose figures and names agree (a template filled with other numbers,
        names or dates is not): coverage of figures at ``near_duplicate_figures``, and no figure
        value or entity on both sides that the other lacks (``one_way``: one text of one language
        copies the other exactly, and may only drop or add a passage)."""
        if p.near_duplicate < self.t.near_duplicate:
            return False
        if p.figures is not None and p.figures < self.t.near_duplicate_figures:
            return False
        return one_way(a.figure_values, b.figure_values) and one_way(a.entities.keys(), b.entities.keys())

    def _threshold(self, p: PairScore, a: Features, b: Features) -> float | None:
        """The score this pair must reach to merge, given its strongest non-content signal."""
        t = self.t
        if p.clash:
            return None
        if self.near_duplicate(p, a, b):
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

    def _relate(self, f: Features, story_key: int, related: Related) -> None:
        """Link ``f``'s story to the stories whose items share enough rare anchors with it
        (``related``: per other story, its item with the most shared weight)."""
        links = self.related
        doc_id = f.doc.id
        for other, score, d in related:
            if other == story_key:
                continue
            key = (story_key, other) if story_key < other else (other, story_key)
            old = links.get(key)
            if old is None or score > old.score:
                links[key] = RelatedLink(round(score, 3), (doc_id, d))

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


def one_way(a: AbstractSet[Any], b: AbstractSet[Any]) -> bool:
    """At most one of ``a``, ``b`` has what the other lacks: one contains the other."""
    return a <= b or b <= a


VetoReason = Literal["figures", "names", "recurring"]


def veto(p: PairScore, a: Features, b: Features, t: Thresholds) -> VetoReason | None:
    """Why ``a`` and ``b`` must not merge on content even when they score high, or None.

    - ``figures``: each has a heavy figure (weight ``veto_figure_weight`` or more: amounts, prices)
      that the other lacks, or — nearly the same text (MinHash at ``near_duplicate``) — any figure
      value: a template filled with other numbers. A translation may round or drop a figure, it
      does not bring one of its own; and both carrying heavy figures (0.5 or more) without one
      the very same on both sides (prices a percent apart are another day's prices: a translation
      keeps at least one figure as it is; on the tune half all of them do);
    - ``recurring``: one outlet's two items ``template_hours`` or more apart (not near-duplicate
      texts): the same outlet's template on another day (daily price wrap, weekly fund flows) —
      an outlet's translations of one article come out within hours;
    - ``names``: each names a heavy lexicon entity (weight ``veto_entity_weight`` or more) of one
      kind (person, company, exchange, coin, place…) that the other does not (or, nearly the same
      text, any entity the other lacks, both ways): a listing or funding round of another company
      or token. A translation keeps the names of its original (where
      the lexicon misses a form, the other side lacks a name, it does not name another)."""
    if p.near_duplicate >= t.near_duplicate:
        if not one_way(a.figure_values, b.figure_values):
            return "figures"
        if not one_way(a.entities.keys(), b.entities.keys()):
            return "names"
    elif a.doc.outlet == b.doc.outlet and p.hours >= t.template_hours:
        return "recurring"
    if (_unmatched_figure(a, b, t) and _unmatched_figure(b, a, t)) or not _one_figure_exact(a, b):
        return "figures"
    floor = t.veto_entity_weight
    entities = default_lexicon().entities
    only_a = {
        entities[k].kind
        for k, w in a.entities.items()
        if w >= floor and k not in b.entities and k in entities
    }
    if only_a:
        only_b = {
            entities[k].kind
            for k, w in b.entities.items()
            if w >= floor and k not in a.entities and k in entities
        }
        if only_a & only_b:
            return "names"
    return None


def _unmatched_figure(a: Features, b: Features, t: Thresholds) -> bool:
    """Whether ``a`` has a figure weighing ``veto_figure_weight`` or more with no ``close`` one in
    ``b`` (``b``'s values are sorted: bisection)."""
    tol = t.figure_tolerance
    values = b.figures_sorted_values
    for v, w in a.figures:
        if w < t.veto_figure_weight:
            continue
        lo, hi = sorted((v * (1 - tol), v / (1 - tol)))
        i = bisect_left(values, lo - abs(lo) * 1e-9)
        while i < len(values) and values[i] <= hi + abs(hi) * 1e-9:
            if close(values[i], v, tol):
                break
            i += 1
        else:
            return True
    return False


EXACT = 1e-9
"""Relative difference under which two figures are the very same number (float parsing aside)."""


def _one_figure_exact(a: Features, b: Features) -> bool:
    """Whether ``a`` and ``b`` share one figure weighing 0.5 or more exactly, or one of them has none:
    a translation carries at least one of its original's figures as it is (15亿 = 1.5 billion),
    while another day's wrap has prices and totals that are merely close."""
    heavy_a = [v for v, w in a.figures if w >= 0.5]
    if not heavy_a or not any(w >= 0.5 for _, w in b.figures):
        return True
    values = b.figures_sorted_values
    for v in heavy_a:
        i = bisect_left(values, v - abs(v) * EXACT)
        if i < len(values) and close(values[i], v, EXACT):
            return True
    return False


def _link_rank(entry: tuple[int, RelatedLink]) -> tuple[float, int]:
    other, link = entry
    return -link.score, other
