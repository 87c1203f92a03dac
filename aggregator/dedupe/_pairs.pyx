# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Pair scoring of dedupe in C (built by the package build: ``setup.py``); it returns
``similarity.PairScore``s.

Clustering scores millions of candidate pairs, and in pure Python every comparison pays for dict
lookups, tuples and float objects. Here each item's ``Features`` is copied once into flat C arrays
(``Anchors``: entity, name, sequence and paragraph keys interned to ints) and
``compare``, ``finish``, ``with_layout`` and ``paragraph_alignment`` run in plain C.

``tests/dedupe_oracle/similarity.py`` computes the same scores the readable way (``oracle.X``
below names its function ``X``); ``tests/test_dedupe_native.py`` checks that both reach the same decisions and the same scores
up to rounding.
"""

cimport cython
from cpython.object cimport Py_TYPE, PyObject, PyTypeObject
from libc.math cimport INFINITY, fabs, isfinite
from libc.stdint cimport int32_t, uint32_t
from libc.stdlib cimport free, malloc, qsort, realloc
from libc.string cimport memset

import dataclasses
import types

from aggregator.dedupe.similarity import PairScore

_FIELDS = (
    "declared", "image", "cite", "near_duplicate", "figures", "figures_max", "entities",
    "entities_max", "order", "score", "mass", "clash", "hours", "complete", "layout",
)
if (
    tuple(f.name for f in dataclasses.fields(PairScore)) != _FIELDS
    or hasattr(PairScore, "__post_init__")
    or not all(isinstance(PairScore.__dict__.get(name), types.MemberDescriptorType) for name in _FIELDS)
):
    # ``_score`` fills the slots of every field itself: a changed PairScore needs it changed too.
    raise ImportError("aggregator.dedupe._pairs does not match similarity.PairScore: update _score")
cdef type _PairScore = PairScore
cdef tuple _NO_ARGS = ()
cdef tuple _SLOTS = tuple(PairScore.__dict__[name] for name in _FIELDS)


ctypedef struct Fig:  # (value, weight) of ``Features.figures`` / ``figures_sorted``
    double value
    double weight

ctypedef struct Keyed:  # one entry of ``entities`` / ``names``, kept in dict order
    double weight
    int32_t key

ctypedef struct Weight:  # one entry of ``anchor_weights``, sorted by key
    double weight
    int32_t key
    int32_t is_name  # the key is in ``names`` too

ctypedef struct SeqEntry:  # one entry of ``sequence`` / ``seq_values``
    double value  # figures
    int32_t key  # entities (interned)
    int32_t is_figure

ctypedef struct At:  # (value, position) of ``seq_figures`` / ``paragraph_figures``
    double value
    int32_t pos

ctypedef struct Posting:  # key → ``count`` positions from ``start`` (``seq_index``: the position)
    int32_t key
    int32_t start
    int32_t count

ctypedef struct KeySet:  # ``identity`` / ``declared`` / ``cites``
    Py_hash_t* hashes  # sorted
    Py_ssize_t n
    PyObject* keys  # the frozenset itself (held by its ``Anchors``), read on a hash match

ctypedef struct Params:  # the ``Thresholds`` fields scoring reads
    double tol
    double containment
    double figure_share
    double entity_share
    double order_share
    double min_mass_with_image


# ---------------------------------------------------------------- small helpers


cdef inline double _min(double x, double y) noexcept:
    """Python's ``min(x, y)``: ``x`` unless ``y`` is smaller."""
    return y if y < x else x


cdef inline double _max(double x, double y) noexcept:
    """Python's ``max(x, y)``: ``x`` unless ``y`` is larger."""
    return y if y > x else x


cdef inline bint _close(double a, double b, double tol) noexcept:
    """``numbers.close``."""
    return a == b or fabs(a - b) <= tol * _max(fabs(a), fabs(b))


ctypedef fused Valued:  # sorted by ``value``
    Fig
    At


ctypedef fused Keyed_by_int:  # sorted by ``key``
    Weight
    Posting


cdef inline Py_ssize_t _bisect(const Valued* xs, Py_ssize_t n, double x) noexcept:
    """``bisect_left`` on the values of ``xs``; for ``At`` entries it is ``bisect_left(xs, (x, -1))``,
    since ``(u, j) < (x, -1)`` is ``u < x`` for positions ``j >= 0``."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) // 2
        if xs[mid].value < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline Py_ssize_t _find(const Keyed_by_int* xs, Py_ssize_t n, int32_t key) noexcept:
    """The index of ``key`` in ``xs``, or -1."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) // 2
        if xs[mid].key < key:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < n and xs[lo].key == key else -1


cdef int _disjoint(const KeySet* x, const KeySet* y) except -1:
    """``x.isdisjoint(y)``. Per-item keys (URLs) are hashed, not interned, so the interner keeps
    only the vocabulary; two sets share a hash only when they share a key (or, rarely, hashes
    collide), and then the frozensets decide."""
    cdef Py_ssize_t i = 0, j = 0
    while i < x.n and j < y.n:
        if x.hashes[i] < y.hashes[j]:
            i += 1
        elif x.hashes[i] > y.hashes[j]:
            j += 1
        else:
            return (<object> x.keys).isdisjoint(<object> y.keys)
    return True


cdef int _by_hash(const void* x, const void* y) noexcept nogil:
    cdef Py_hash_t a = (<const Py_hash_t*> x)[0], b = (<const Py_hash_t*> y)[0]
    return (a > b) - (a < b)


cdef int _by_weight_key(const void* x, const void* y) noexcept nogil:
    cdef int32_t a = (<const Weight*> x).key, b = (<const Weight*> y).key
    return (a > b) - (a < b)


cdef int _by_posting_key(const void* x, const void* y) noexcept nogil:
    cdef int32_t a = (<const Posting*> x).key, b = (<const Posting*> y).key
    return (a > b) - (a < b)


# Scratch buffers reused by every call (the GIL is held throughout, nothing re-enters).
cdef enum:
    _MATCHED = 0  # figure coverage: which of b's figures matched
    _INDICES = 1  # order: b's positions of a's anchors
    _TAILS = 2  # order: longest increasing run
    _SHARED = 3  # paragraph alignment: shared anchors, n x m
    _FOUND = 4  # paragraph alignment: b's paragraphs already credited for one figure
    _ROWS = 5  # paragraph alignment: two rows of the in-order alignment
cdef void* _scratch[6]
cdef size_t _scratch_size[6]


cdef void* _grow(int slot, size_t nbytes) except NULL:
    cdef void* p
    if nbytes < 16:
        nbytes = 16
    if nbytes > _scratch_size[slot]:
        p = realloc(_scratch[slot], nbytes)
        if p == NULL:
            raise MemoryError()
        _scratch[slot] = p
        _scratch_size[slot] = nbytes
    return _scratch[slot]


cdef object _params_of = None
cdef Params _params


cdef const Params* _read(object t) except NULL:
    """The fields of ``t``, read once per ``Thresholds`` object (it is frozen)."""
    global _params_of, _params
    cdef Params fresh
    if t is not _params_of:
        fresh.tol = t.figure_tolerance
        fresh.containment = t.containment
        fresh.figure_share = t.figure_share
        fresh.entity_share = t.entity_share
        fresh.order_share = t.order_share
        fresh.min_mass_with_image = t.min_mass_with_image
        _params, _params_of = fresh, t  # only once every field is read
    return &_params


cdef int32_t _intern(dict interner, object key) except -1:
    cdef object found = interner.get(key)
    if found is None:
        found = len(interner)
        interner[key] = found
    return found


cdef dict _as_dict(object mapping):
    return mapping if type(mapping) is dict else dict(mapping)


cdef inline size_t _rounded(size_t nbytes) noexcept:
    return (nbytes + 15) & ~(<size_t> 15)


cdef inline void* _take(char** cursor, size_t nbytes) noexcept:
    """The next ``nbytes`` of one allocation (16-byte aligned pieces)."""
    cdef void* p = cursor[0]
    cursor[0] += _rounded(nbytes)
    return p


# ---------------------------------------------------------------- per-item anchors


@cython.no_gc  # holds only the Features and its frozensets: never part of a cycle
cdef class Anchors:
    """One item's ``Features`` as flat C arrays (one allocation), for the pair functions below.

    Entity, name, sequence and paragraph keys are interned through the caller's ``interner``
    (key → small int, shared by every item; an unseen key gets ``len(interner)``) so pairs compare
    ints, never strings; per-item keys (identity, declared, cites) are hashed instead, so they do
    not pile up in the interner. The sorted tuples of ``Features`` are copied in their order, so
    bisection meets the very values the oracle meets.
    """

    cdef readonly object features
    cdef readonly double figure_mass
    cdef double entity_mass
    cdef double name_mass
    cdef double ts
    cdef int32_t near_family
    cdef object image  # None: none (``Features.image`` is false)
    cdef bint has_minhash
    cdef bint ready  # every array filled (a failed ``__init__`` leaves it unusable)
    cdef char* block
    cdef Fig* figures
    cdef Fig* figures_sorted
    cdef Keyed* entities
    cdef Keyed* names
    cdef Weight* weights
    cdef SeqEntry* seq
    cdef At* seq_figures
    cdef At* para_figures
    cdef Posting* seq_index
    cdef Posting* para_entities
    cdef double* title_figures
    cdef int32_t* para_sizes
    cdef int32_t* para_index
    cdef KeySet identity
    cdef KeySet declared
    cdef KeySet cites
    cdef object keys  # the frozensets of the key sets, kept alive
    cdef uint32_t* minhash
    cdef Py_ssize_t n_figures, n_entities, n_names, n_weights, n_seq, n_seq_figures
    cdef Py_ssize_t n_para_figures, n_seq_index, n_para_entities, n_title, n_paragraphs
    cdef Py_ssize_t n_para_index, n_minhash

    def __cinit__(self):
        self.block = NULL

    def __dealloc__(self):
        free(self.block)

    def __init__(self, f, dict interner not None):
        cdef Py_ssize_t i, n
        cdef size_t total
        cdef char* cursor
        cdef tuple pair, indices
        cdef object key, value
        cdef tuple figures = tuple(f.figures), figures_sorted = tuple(f.figures_sorted)
        cdef tuple sequence = tuple(f.sequence), seq_values = tuple(f.seq_values)
        cdef tuple seq_figures = tuple(f.seq_figures), title_figures = tuple(f.title_figures)
        cdef tuple paragraph_sizes = tuple(f.paragraph_sizes)
        cdef tuple paragraph_figures = tuple(f.paragraph_figures)
        cdef dict entities = _as_dict(f.entities), names = _as_dict(f.names)
        cdef dict weights = _as_dict(f.anchor_weights), seq_index = _as_dict(f.seq_index)
        cdef dict paragraph_entities = _as_dict(f.paragraph_entities)
        cdef object minhash = f.minhash
        cdef tuple lanes = tuple(minhash) if minhash is not None else ()
        self.ready = False
        if len(figures_sorted) != len(figures) or len(seq_values) != len(sequence):
            raise ValueError("inconsistent Features")
        self.features = f
        self.figure_mass = f.figure_mass
        self.entity_mass = f.entity_mass
        self.name_mass = f.name_mass
        self.ts = f.ts
        self.near_family = _intern(interner, f.near_family)
        self.image = f.image if f.image else None
        self.has_minhash = minhash is not None
        self.n_figures = len(figures)
        self.n_entities = len(entities)
        self.n_names = len(names)
        self.n_weights = len(weights)
        self.n_seq = len(sequence)
        self.n_seq_figures = len(seq_figures)
        self.n_para_figures = len(paragraph_figures)
        self.n_seq_index = len(seq_index)
        self.n_para_entities = len(paragraph_entities)
        self.n_title = len(title_figures)
        self.n_paragraphs = len(paragraph_sizes)
        self.n_para_index = 0
        for value in paragraph_entities.values():
            self.n_para_index += len(value)
        self.keys = (frozenset(f.identity), frozenset(f.declared), frozenset(f.cites))
        self.identity.n = len(self.keys[0])
        self.declared.n = len(self.keys[1])
        self.cites.n = len(self.keys[2])
        self.n_minhash = len(lanes)

        total = (
            2 * _rounded(self.n_figures * sizeof(Fig))
            + _rounded(self.n_entities * sizeof(Keyed))
            + _rounded(self.n_names * sizeof(Keyed))
            + _rounded(self.n_weights * sizeof(Weight))
            + _rounded(self.n_seq * sizeof(SeqEntry))
            + _rounded(self.n_seq_figures * sizeof(At))
            + _rounded(self.n_para_figures * sizeof(At))
            + _rounded(self.n_seq_index * sizeof(Posting))
            + _rounded(self.n_para_entities * sizeof(Posting))
            + _rounded(self.n_title * sizeof(double))
            + _rounded(self.n_paragraphs * sizeof(int32_t))
            + _rounded(self.n_para_index * sizeof(int32_t))
            + _rounded(self.identity.n * sizeof(Py_hash_t))
            + _rounded(self.declared.n * sizeof(Py_hash_t))
            + _rounded(self.cites.n * sizeof(Py_hash_t))
            + _rounded(self.n_minhash * sizeof(uint32_t))
        )
        free(self.block)
        self.block = <char*> malloc(total if total else 16)
        if self.block == NULL:
            raise MemoryError()
        cursor = self.block
        self.figures = <Fig*> _take(&cursor, self.n_figures * sizeof(Fig))
        self.figures_sorted = <Fig*> _take(&cursor, self.n_figures * sizeof(Fig))
        self.entities = <Keyed*> _take(&cursor, self.n_entities * sizeof(Keyed))
        self.names = <Keyed*> _take(&cursor, self.n_names * sizeof(Keyed))
        self.weights = <Weight*> _take(&cursor, self.n_weights * sizeof(Weight))
        self.seq = <SeqEntry*> _take(&cursor, self.n_seq * sizeof(SeqEntry))
        self.seq_figures = <At*> _take(&cursor, self.n_seq_figures * sizeof(At))
        self.para_figures = <At*> _take(&cursor, self.n_para_figures * sizeof(At))
        self.seq_index = <Posting*> _take(&cursor, self.n_seq_index * sizeof(Posting))
        self.para_entities = <Posting*> _take(&cursor, self.n_para_entities * sizeof(Posting))
        self.title_figures = <double*> _take(&cursor, self.n_title * sizeof(double))
        self.para_sizes = <int32_t*> _take(&cursor, self.n_paragraphs * sizeof(int32_t))
        self.para_index = <int32_t*> _take(&cursor, self.n_para_index * sizeof(int32_t))
        self.identity.hashes = <Py_hash_t*> _take(&cursor, self.identity.n * sizeof(Py_hash_t))
        self.declared.hashes = <Py_hash_t*> _take(&cursor, self.declared.n * sizeof(Py_hash_t))
        self.cites.hashes = <Py_hash_t*> _take(&cursor, self.cites.n * sizeof(Py_hash_t))
        self.minhash = <uint32_t*> _take(&cursor, self.n_minhash * sizeof(uint32_t))

        for i in range(self.n_figures):
            pair = figures[i]
            self.figures[i].value = pair[0]
            self.figures[i].weight = pair[1]
            pair = figures_sorted[i]
            self.figures_sorted[i].value = pair[0]
            self.figures_sorted[i].weight = pair[1]
        i = 0
        for key, value in entities.items():
            self.entities[i].key = _intern(interner, key)
            self.entities[i].weight = value
            i += 1
        i = 0
        for key, value in names.items():
            self.names[i].key = _intern(interner, key)
            self.names[i].weight = value
            i += 1
        i = 0
        for key, value in weights.items():
            self.weights[i].key = _intern(interner, key)
            self.weights[i].weight = value
            self.weights[i].is_name = key in names
            i += 1
        qsort(self.weights, self.n_weights, sizeof(Weight), _by_weight_key)
        for i in range(self.n_seq):
            value = seq_values[i]
            self.seq[i].is_figure = value is not None
            if value is None:
                self.seq[i].value = 0.0
                self.seq[i].key = _intern(interner, sequence[i])
            else:
                self.seq[i].value = value
                self.seq[i].key = -1
        for i in range(self.n_seq_figures):
            pair = seq_figures[i]
            self.seq_figures[i].value = pair[0]
            self.seq_figures[i].pos = pair[1]
        i = 0
        for key, value in seq_index.items():
            self.seq_index[i].key = _intern(interner, key)
            self.seq_index[i].start = value
            self.seq_index[i].count = 1
            i += 1
        qsort(self.seq_index, self.n_seq_index, sizeof(Posting), _by_posting_key)
        for i in range(self.n_title):
            self.title_figures[i] = title_figures[i]
        for i in range(self.n_paragraphs):
            self.para_sizes[i] = paragraph_sizes[i]
        for i in range(self.n_para_figures):
            pair = paragraph_figures[i]
            self.para_figures[i].value = pair[0]
            self.para_figures[i].pos = self._paragraph(pair[1])
        i = n = 0
        for key, value in paragraph_entities.items():
            indices = tuple(value)
            self.para_entities[i].key = _intern(interner, key)
            self.para_entities[i].start = n
            self.para_entities[i].count = len(indices)
            for value in indices:
                self.para_index[n] = self._paragraph(value)
                n += 1
            i += 1
        qsort(self.para_entities, self.n_para_entities, sizeof(Posting), _by_posting_key)
        _hashed(self.keys[0], &self.identity)
        _hashed(self.keys[1], &self.declared)
        _hashed(self.keys[2], &self.cites)
        for i in range(self.n_minhash):
            self.minhash[i] = lanes[i]  # OverflowError unless 32 bits (as ``minhash_lanes`` packs them)
        self.ready = True

    cdef int32_t _paragraph(self, object index) except -1:
        """A paragraph index, checked: the pair functions index arrays with it."""
        cdef Py_ssize_t i = index
        if not 0 <= i < self.n_paragraphs:
            raise ValueError("paragraph index out of range")
        return <int32_t> i


cdef int _check(Anchors a, Anchors b) except -1:
    if not (a.ready and b.ready):
        raise ValueError("Anchors not initialised")
    return 0


cdef int _hashed(frozenset keys, KeySet* out) except -1:
    """Fill ``out`` with the sorted hashes of ``keys``."""
    cdef Py_ssize_t i = 0
    for key in keys:
        out.hashes[i] = hash(key)
        i += 1
    out.keys = <PyObject*> keys
    qsort(out.hashes, i, sizeof(Py_hash_t), _by_hash)
    return 0


# ---------------------------------------------------------------- the signals


cdef Py_ssize_t _find_close(const Fig* xs, Py_ssize_t n, double v, double tol) noexcept:
    """``oracle._find_close`` on the values of ``xs`` (-1: none)."""
    cdef Py_ssize_t i = _bisect(xs, n, v * (1.0 - tol))
    cdef double hi = v * (1.0 + tol) + 1e-12
    cdef double u
    while i < n:
        u = xs[i].value
        if u > hi:
            return -1
        if u == v or fabs(u - v) <= tol * _max(fabs(u), fabs(v)):
            return i
        i += 1
    return -1


cdef int _figure_coverage(Anchors a, Anchors b, double tol, double* cov, double* shared) except -1:
    """``oracle._figure_coverage``: 1 with ``cov`` set, 0 for None; ``shared`` either way."""
    cdef Py_ssize_t i, j
    cdef double w, wb, matched_a = 0.0, matched_b = 0.0, sh = 0.0, x, y
    cdef char* matched
    shared[0] = 0.0
    if a.n_figures == 0 or b.n_figures == 0:
        return False
    matched = <char*> _grow(_MATCHED, b.n_figures)
    memset(matched, 0, b.n_figures)
    for i in range(a.n_figures):
        j = _find_close(b.figures_sorted, b.n_figures, a.figures[i].value, tol)
        if j >= 0:
            w = a.figures[i].weight
            matched_a += w
            wb = b.figures_sorted[j].weight
            sh += w if w <= wb else wb
            matched[j] = 1
    for j in range(b.n_figures):
        if matched[j]:
            matched_b += b.figures_sorted[j].weight
    shared[0] = sh
    if a.figure_mass < 0.5 or b.figure_mass < 0.5:
        return False
    x = matched_a / a.figure_mass
    y = matched_b / b.figure_mass
    cov[0] = _min(x, y)
    cov[1] = _max(x, y)
    return True


cdef bint _entity_coverage(Anchors a, Anchors b, double* cov, double* shared_out) noexcept:
    """``oracle._entity_coverage``: 1 with ``cov`` set, 0 for None; ``shared_out`` either way."""
    cdef Py_ssize_t i, k
    cdef double w, other, shared = 0.0, a_names_shared = 0.0, b_names_shared = 0.0
    cdef double mass_a, mass_b, x, y
    for i in range(a.n_entities):
        k = _find(b.weights, b.n_weights, a.entities[i].key)
        if k >= 0 and b.weights[k].weight != 0.0:  # ``if other:``
            w = a.entities[i].weight
            other = b.weights[k].weight
            shared += w if w <= other else other
            if b.weights[k].is_name:
                b_names_shared += other
    for i in range(a.n_names):
        k = _find(b.weights, b.n_weights, a.names[i].key)
        if k >= 0 and b.weights[k].weight != 0.0:
            w = a.names[i].weight
            other = b.weights[k].weight
            shared += w if w <= other else other
            a_names_shared += w
            if b.weights[k].is_name:
                b_names_shared += other
    if a.near_family == b.near_family:
        mass_a = a.entity_mass + a.name_mass
        mass_b = b.entity_mass + b.name_mass
    else:
        mass_a = a.entity_mass + a_names_shared
        mass_b = b.entity_mass + b_names_shared
    shared_out[0] = shared
    if mass_a < 0.5 or mass_b < 0.5:
        return False
    x = shared / mass_a
    y = shared / mass_b
    cov[0] = _min(_min(1.0, x), y)
    cov[1] = _min(1.0, _max(x, y))
    return True


cdef int _order(Anchors a, Anchors b, double tol, double* out) except -1:
    """``oracle._order``: 1 with ``out`` set, 0 for None."""
    cdef Py_ssize_t i, k, lo, hi, mid, count = 0, n_tails = 0
    cdef int32_t x
    cdef double value
    cdef int32_t* indices = <int32_t*> _grow(_INDICES, a.n_seq * sizeof(int32_t))
    cdef int32_t* tails = <int32_t*> _grow(_TAILS, a.n_seq * sizeof(int32_t))
    for i in range(a.n_seq):
        if a.seq[i].is_figure:
            value = a.seq[i].value
            k = _bisect(b.seq_figures, b.n_seq_figures, value * (1.0 - tol))
            if k < b.n_seq_figures and b.seq_figures[k].value <= value * (1.0 + tol) + 1e-12:
                indices[count] = b.seq_figures[k].pos
                count += 1
        else:
            k = _find(b.seq_index, b.n_seq_index, a.seq[i].key)
            if k >= 0:
                indices[count] = b.seq_index[k].start
                count += 1
    if count < 3:
        return False
    for i in range(count):
        x = indices[i]
        lo, hi = 0, n_tails
        while lo < hi:
            mid = (lo + hi) // 2
            if tails[mid] < x:
                lo = mid + 1
            else:
                hi = mid
        tails[lo] = x
        if lo == n_tails:
            n_tails += 1
    out[0] = <double> n_tails / <double> count
    return True


cdef inline void _close_range(double v, double tol, double* lo, double* hi) noexcept:
    """``oracle._close_range``."""
    cdef double x, y
    if not (0.0 <= tol and tol < 1.0) or not isfinite(v):
        lo[0], hi[0] = -INFINITY, INFINITY
        return
    x = v * (1.0 - tol)
    y = v / (1.0 - tol)
    if x > y:
        x, y = y, x
    lo[0] = x - fabs(x) * 1e-9
    hi[0] = y + fabs(y) * 1e-9


cdef object _paragraph_alignment(Anchors a, Anchors b, double tol):
    """``oracle.paragraph_alignment``. The shared-anchor counts are integers, so a's
    paragraph figures are walked through ``paragraph_figures`` (same (value, paragraph) pairs as
    ``paragraphs``); the floats then follow Python's order exactly."""
    cdef Py_ssize_t n = a.n_paragraphs, m = b.n_paragraphs
    cdef Py_ssize_t f, i, j, k, p, q, ia, ib, end = b.n_para_figures
    cdef int32_t* shared
    cdef int32_t* row
    cdef int32_t* found
    cdef int32_t size_a, denom
    cdef double v, u, s, diag, best, row_max, unordered, ordered, lo = 0.0, hi = 0.0
    cdef double* prev
    cdef double* cur
    cdef double* swap
    cdef const Posting* pa
    cdef const Posting* pb
    if n == 0 or m == 0:
        return None
    shared = <int32_t*> _grow(_SHARED, n * m * sizeof(int32_t))
    memset(shared, 0, n * m * sizeof(int32_t))
    if end:
        found = <int32_t*> _grow(_FOUND, m * sizeof(int32_t))
        memset(found, 0, m * sizeof(int32_t))
        for f in range(a.n_para_figures):
            # ``found`` holds, per paragraph of b, the last figure (1-based) that credited it.
            v = a.para_figures[f].value
            row = shared + a.para_figures[f].pos * m
            _close_range(v, tol, &lo, &hi)
            k = _bisect(b.para_figures, end, lo)
            while k < end and b.para_figures[k].value <= hi:
                u = b.para_figures[k].value
                j = b.para_figures[k].pos
                if found[j] != f + 1 and _close(v, u, tol):
                    found[j] = <int32_t> (f + 1)
                    row[j] += 4
                k += 1
    ia = ib = 0
    while ia < a.n_para_entities and ib < b.n_para_entities:
        pa = &a.para_entities[ia]
        pb = &b.para_entities[ib]
        if pa.key < pb.key:
            ia += 1
        elif pa.key > pb.key:
            ib += 1
        else:
            for p in range(pa.start, pa.start + pa.count):
                row = shared + a.para_index[p] * m
                for q in range(pb.start, pb.start + pb.count):
                    row[b.para_index[q]] += 2
            ia += 1
            ib += 1
    # Similarities row by row (never stored), the in-order alignment and each row's best.
    prev = <double*> _grow(_ROWS, 2 * (m + 1) * sizeof(double))
    cur = prev + (m + 1)
    for j in range(m + 1):
        prev[j] = 0.0
    unordered = 0.0
    for i in range(n):
        row = shared + i * m
        size_a = a.para_sizes[i]
        cur[0] = 0.0
        row_max = 0.0
        for j in range(m):
            denom = size_a + b.para_sizes[j]
            s = <double> row[j] / <double> denom if denom else 0.0
            if j == 0 or s > row_max:
                row_max = s
            diag = prev[j] + s
            best = prev[j + 1] if prev[j + 1] > cur[j] else cur[j]
            cur[j + 1] = diag if diag > best else best
        unordered += row_max
        swap = prev
        prev = cur
        cur = swap
    ordered = prev[m]
    return (ordered / <double> (n if n < m else m), ordered / unordered if unordered != 0.0 else 0.0)


cdef bint _clash(Anchors a, Anchors b, double tol) noexcept:
    """``oracle._clash``."""
    cdef Py_ssize_t i
    cdef bint a_in_b = False, b_in_a = False
    if a.n_title == 0 or b.n_title == 0:
        return False
    for i in range(a.n_title):
        if _find_close(b.figures_sorted, b.n_figures, a.title_figures[i], tol) >= 0:
            a_in_b = True
            break
    for i in range(b.n_title):
        if _find_close(a.figures_sorted, a.n_figures, b.title_figures[i], tol) >= 0:
            b_in_a = True
            break
    return not a_in_b and not b_in_a


cdef object _declared(Anchors a, Anchors b):
    """``oracle._declared``."""
    if not _disjoint(&a.identity, &b.identity):
        return "same-article"
    if a.declared.n == 0:
        return None if _disjoint(&b.declared, &a.identity) else "attribution"
    if not (_disjoint(&a.declared, &b.identity) and _disjoint(&b.declared, &a.identity)):
        return "attribution"
    if not _disjoint(&a.declared, &b.declared):
        return "same-original"
    return None


cdef double _lane_jaccard(Anchors a, Anchors b) except? -1.0:
    """``oracle.jaccard`` of the MinHash signatures: the share of equal MinHash values."""
    cdef Py_ssize_t i, n = a.n_minhash, equal = 0
    if not a.has_minhash or not b.has_minhash:
        return 0.0
    if n != b.n_minhash:
        raise ValueError("MinHash signatures of different lengths")
    if n == 0:
        raise ZeroDivisionError("division by zero")
    for i in range(n):
        equal += a.minhash[i] == b.minhash[i]
    return <double> equal / <double> n


cdef double _blend(
    bint has_fig, double fig, bint has_ent, double ent, bint has_order, double order, const Params* t
) noexcept:
    """``oracle._blend``: parts summed in the order figures, entities, order."""
    cdef double total = 0.0, acc = 0.0
    if has_fig:
        total += t.figure_share
    if has_ent:
        total += t.entity_share
    if has_order:
        total += t.order_share
    if total == 0.0:  # ``if total`` (NaN is true in both)
        return 0.0
    if has_fig:
        acc += fig * t.figure_share
    if has_ent:
        acc += ent * t.entity_share
    if has_order:
        acc += order * t.order_share
    return acc / total


cdef inline int _put(object p, Py_ssize_t field, object value) except -1:
    """Set one slot of ``p`` through its member descriptor (what ``object.__setattr__`` does)."""
    cdef object slot = _SLOTS[field]
    return Py_TYPE(slot).tp_descr_set(slot, p, value)


cdef object _score(
    object declared, bint image, bint cite, double near_duplicate, object figures,
    object figures_max, object entities, object entities_max, object order, double score,
    double mass, bint clash, double hours, bint complete, object layout,
):
    """A ``PairScore`` with every field set, as its generated ``__init__`` sets them, without the
    Python-level call (that costs 3 µs, more than a whole native comparison)."""
    cdef object p = (<PyTypeObject*> _PairScore).tp_new(_PairScore, <PyObject*> _NO_ARGS, NULL)
    _put(p, 0, declared)
    _put(p, 1, image)
    _put(p, 2, cite)
    _put(p, 3, near_duplicate)
    _put(p, 4, figures)
    _put(p, 5, figures_max)
    _put(p, 6, entities)
    _put(p, 7, entities_max)
    _put(p, 8, order)
    _put(p, 9, score)
    _put(p, 10, mass)
    _put(p, 11, clash)
    _put(p, 12, hours)
    _put(p, 13, complete)
    _put(p, 14, layout)
    return p


# ---------------------------------------------------------------- the Python interface


def compare(Anchors a not None, Anchors b not None, t, bint full=True):
    """``oracle.compare`` on native anchors."""
    return _compare(a, b, t, full)


def compare_many(Anchors a not None, dict anchors, list doc_ids, t):
    """``{d: compare(a, anchors[d], t, full=False)}`` for each ``d`` of ``doc_ids``, in one call (a
    newcomer against its blocking candidates)."""
    cdef dict out = {}
    cdef Anchors b
    for d in doc_ids:
        b = anchors[d]
        if b is None:
            raise TypeError("no Anchors for item %r" % (d,))
        out[d] = _compare(a, b, t, False)
    return out


cdef object _compare(Anchors a, Anchors b, t, bint full):
    _check(a, b)
    cdef const Params* params = _read(t)
    cdef double fig_cov[2]
    cdef double ent_cov[2]
    cdef double mass, score, low, high, fig_shared = 0.0, ent_shared = 0.0
    cdef double fig_part = 0.0, ent_part = 0.0, order = 0.0
    cdef bint has_fig, has_ent, has_order = False, complete = True
    cdef object layout = None
    fig_cov[0] = fig_cov[1] = ent_cov[0] = ent_cov[1] = 0.0
    has_fig = _figure_coverage(a, b, params.tol, fig_cov, &fig_shared)
    has_ent = _entity_coverage(a, b, ent_cov, &ent_shared)
    mass = fig_shared + ent_shared
    if has_fig:
        fig_part = (1.0 - params.containment) * fig_cov[0] + params.containment * fig_cov[1]
    if has_ent:
        ent_part = (ent_cov[0] + ent_cov[1]) / 2.0
    if mass < params.min_mass_with_image:
        score = _blend(has_fig, fig_part, has_ent, ent_part, False, 0.0, params)
    elif full:
        has_order = _order(a, b, params.tol, &order)
        score = _blend(has_fig, fig_part, has_ent, ent_part, has_order, order, params)
        layout = _paragraph_alignment(a, b, params.tol)
    else:
        complete = False
        low = _blend(has_fig, fig_part, has_ent, ent_part, False, 0.0, params)
        high = _blend(has_fig, fig_part, has_ent, ent_part, True, 1.0, params)
        score = high if high > low else low
    return _score(
        _declared(a, b),
        a.image is not None and a.image == b.image,
        not (_disjoint(&a.cites, &b.identity) and _disjoint(&b.cites, &a.identity)),
        _lane_jaccard(a, b) if a.near_family == b.near_family else 0.0,
        fig_cov[0] if has_fig else None,
        fig_cov[1] if has_fig else None,
        ent_cov[0] if has_ent else None,
        ent_cov[1] if has_ent else None,
        order if has_order else None,
        score,
        mass,
        _clash(a, b, params.tol),
        fabs(a.ts - b.ts) / 3600.0,
        complete,
        layout,
    )


def finish(p, Anchors a not None, Anchors b not None, t, bint layout=True):
    """``oracle.finish`` on native anchors (``p`` from either module's ``compare``)."""
    if p.complete:
        return p
    _check(a, b)
    cdef const Params* params = _read(t)
    cdef double fig_part = 0.0, ent_part = 0.0, order = 0.0
    cdef bint has_fig, has_ent, has_order
    figures, figures_max = p.figures, p.figures_max
    entities, entities_max = p.entities, p.entities_max
    has_fig = figures is not None and figures_max is not None
    has_ent = entities is not None and entities_max is not None
    if has_fig:
        fig_part = (1.0 - params.containment) * <double> figures + params.containment * <double> figures_max
    if has_ent:
        ent_part = (<double> entities + <double> entities_max) / 2.0
    has_order = _order(a, b, params.tol, &order)
    return _score(
        p.declared,
        p.image,
        p.cite,
        p.near_duplicate,
        figures,
        figures_max,
        entities,
        entities_max,
        order if has_order else None,
        _blend(has_fig, fig_part, has_ent, ent_part, has_order, order, params),
        p.mass,
        p.clash,
        p.hours,
        True,
        _paragraph_alignment(a, b, params.tol) if layout else None,
    )


def with_layout(p, Anchors a not None, Anchors b not None, t):
    """``oracle.with_layout`` on native anchors."""
    _check(a, b)
    cdef const Params* params = _read(t)
    return _score(
        p.declared,
        p.image,
        p.cite,
        p.near_duplicate,
        p.figures,
        p.figures_max,
        p.entities,
        p.entities_max,
        p.order,
        p.score,
        p.mass,
        p.clash,
        p.hours,
        p.complete,
        _paragraph_alignment(a, b, params.tol),
    )


def paragraph_alignment(Anchors a not None, Anchors b not None, double tol):
    """``oracle.paragraph_alignment`` on native anchors."""
    _check(a, b)
    return _paragraph_alignment(a, b, tol)
