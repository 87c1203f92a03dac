"""Every dedupe threshold, in one place."""

from __future__ import annotations

from dataclasses import dataclass

RELATED_PER_STORY = 5
"""How many related stories one story keeps: dedupe keeps this many links per story and the API
serves as many per entry (``aggregator.entries``), so no kept link goes unseen and none is
served that dedupe would have dropped."""


@dataclass(frozen=True)
class Thresholds:
    """The numbers that decide merges and related links (tuned on ``eval/tune`` only).

    Time
    - ``window_hours``: a newcomer is compared only with items published this close to it;
      translations appear minutes to hours after the original (Miranda et al. use σ = 72 h for
      stories in general; 48 h keeps every translation lag we have seen, at two thirds of the
      index walking).
    - ``related_hours``: independent stories of one event are linked when this close.

    Figures
    - ``figure_tolerance``: relative difference under which two figures are the same (translators
      round: $1.23 billion → 12 亿).

    Merging on content (no declared identity): a newcomer joins a story when its best pair score
    against a member reaches ``merge`` — or ``merge_with_image`` when they share an image URL, or
    ``merge_with_cite`` when one links the other — provided that
    - the pair has at least ``min_mass`` of shared anchor weight (a figure like $1.2 billion weighs
      1.0, a year 0.2, Bitcoin 0.3, BlackRock 1.0), so that a couple of shared names never merge;
    - on content alone (no image, cite or near-duplicate), the content agrees both ways: the less
      covered side still has ``min_figures`` of its figures matched, figure plus entity coverage
      of the less covered sides reach ``min_coverage``, the better covered side has
      ``min_entities`` of its names matched, and the shared anchors come ``min_order`` in the
      same order; a pair without figures needs ``merge_without_figures``. Independent reports of
      one event quote the same filing (one side's figures all found in the other) but seldom
      cover each other both ways, and they tell the facts in another order;
    - every member of the story with anchors of its own scores at least ``complete_link`` against
      the newcomer (complete link: no chaining through one lenient member);
    - no member's headline figures clash with the newcomer's (a title figure found nowhere in
      the other text, in both directions);
    - on content alone, and on content with a shared image or cite when ``image_layout`` > 0 (its
      factor on both layout thresholds; 0: not checked there, since on the tune half it only
      cost translations), the paragraphs follow each other: matched in order, paragraph by
      paragraph (Dice of their figures and names), they reach ``min_paragraphs`` on average over
      the shorter text, and the in-order matching keeps ``min_paragraph_order`` of the best
      unordered one. A translation keeps its original's paragraphs; two outlets retelling one
      press release quote the same figures and names but group and order them their own way
      (on the tune half this took false merges from 8% to none);
    - the story has no version in the newcomer's locale yet, unless the two are near-duplicate
      texts (MinHash Jaccard ≥ ``near_duplicate``).

    The pair score is ``figure_share * figures + entity_share * entities + order_share * order``
    renormalized over the parts both sides have. ``figures`` blends the weighted coverage of
    the less covered side with that of the more covered side (``containment`` of the blend):
    a translation that drops a paragraph is still contained in the original, while two
    independent reports each carry figures the other lacks. ``entities`` averages both
    directions; ``order`` is how much of the shared anchors come in the same order
    (translations keep the order of facts; independent reports reshuffle them).

    Same-language near-duplicates (MinHash on shingles, zh folded to Simplified): Jaccard at or
    above ``near_duplicate`` merges without other evidence, unless a headline figure clashes or
    the figures disagree (coverage below ``near_duplicate_figures``: the same template filled
    with another day's numbers is another article).

    Look-alikes (``cluster.veto``; crypto news is full of templates filled with other figures,
    names or dates, and a template shares more text with its look-alike than a translation does):
    - a same-language near-duplicate needs the same figures and entities one way at least: a
      figure value or entity on each side that the other lacks is another article (a copy may
      drop or add a passage, not change a number);
    - two items of one outlet ``template_hours`` or more apart merge only as near-duplicates: an
      outlet's translations of one article come out within hours (the corpus: under 7 h), its
      next daily wrap or weekly flow report a day or a week later;
    - each side naming a heavy lexicon entity (``veto_entity_weight`` or more) of one kind that
      the other lacks vetoes the merge: another exchange's listing, another company's round;
    - each side carrying a heavy figure (``veto_figure_weight`` or more: amounts, prices; within
      ``figure_tolerance``) that the other lacks vetoes the merge: a translation rounds or drops
      figures, it brings none of its own (on the tune half, no two versions of one story do).

    Related (never merged): a story is linked to another when an item of each, published within
    ``related_hours``, share ``related`` or more anchor weight as the blocking index counts it
    (the newcomer's weight of each shared figure, entity and half of each shared name; anchors
    carried by more than ``max_postings`` items count nothing), each anchor weighted by its
    rarity in the window (1 when at most ``rare_postings`` items carry it, falling as 1/n beyond:
    on a busy day "Bitcoin" links nothing, "halving" still does); at most ``related_per_story``
    links per story, strongest first.

    Blocking: figures weighing 0.5 or more, entities weighing ``index_entity_weight`` or more and
    every name are indexed; each anchor a candidate shares adds its weight, scaled down by rarity as above;
    anchors shared by more than ``max_postings`` items in the window (``max_figure_postings`` for
    figures, which tell stories apart better) propose nobody (they still count in scores); candidates need ``min_candidate_hits`` and the ``max_candidates`` best
    are scored, then those ranked lower that share a figure (or a declared link, image, cite)
    until ``max_candidates`` of that kind are in; a candidate whose shared figures cannot reach
    ``min_figures`` of the newcomer's (counted from the index) is dropped unless it shares a
    declared link, image or cite, since it could not merge on content. Identity, declared links, images and MinHash
    bands always propose.
    """

    window_hours: float = 48.0
    related_hours: float = 48.0
    figure_tolerance: float = 0.025
    merge: float = 0.72
    merge_without_figures: float = 0.85
    min_figures: float = 0.5
    min_entities: float = 0.6
    min_order: float = 0.65
    min_coverage: float = 1.3
    min_paragraphs: float = 0.6
    min_paragraph_order: float = 0.9
    image_layout: float = 0.0
    merge_with_image: float = 0.35
    merge_with_cite: float = 0.30
    min_mass: float = 2.0
    min_mass_with_image: float = 0.6
    complete_link: float = 0.45
    near_duplicate: float = 0.55
    near_duplicate_figures: float = 0.8
    template_hours: float = 18.0
    veto_entity_weight: float = 0.8
    veto_figure_weight: float = 0.9
    figure_share: float = 0.5
    entity_share: float = 0.2
    order_share: float = 0.3
    containment: float = 0.75
    related: float = 1.0
    rare_postings: int = 30
    related_per_story: int = RELATED_PER_STORY
    max_postings: int = 40
    index_entity_weight: float = 0.3
    max_figure_postings: int = 120
    max_candidates: int = 10
    min_candidate_hits: float = 1.0
    minhash_perm: int = 64
    minhash_bands: int = 16


DEFAULT = Thresholds()
