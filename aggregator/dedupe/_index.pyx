# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The blocking index of ``cluster.Clusterer``, in C (built by the package build: ``setup.py``).

One newcomer's walk over its keys' postings is plain C here, where Python would pay for dict
lookups and float objects on every item. ``tests/dedupe_oracle/index.py`` is the same index in
Python and numpy; ``tests/test_dedupe_kernels.py`` checks that both give the same stories and links.
"""

from cpython.array cimport array
from libc.math cimport fabs
from libc.stdlib cimport free, malloc, qsort, realloc
from libc.string cimport memmove, memset

import array as _array_module

cdef array _QARRAY = _array_module.array("q")


cdef int _PLAIN = 0
cdef int _FIGURE = 1
cdef int _BAND = 2


ctypedef struct Ranked:
    double hits
    long long doc
    Py_ssize_t slot


cdef int _by_rank(const void* a, const void* b) noexcept nogil:
    """Most hits first, then the lower doc id (``np.lexsort((doc_ids, -hits))``)."""
    cdef const Ranked* x = <const Ranked*> a
    cdef const Ranked* y = <const Ranked*> b
    if x.hits > y.hits:
        return -1
    if x.hits < y.hits:
        return 1
    if x.doc < y.doc:
        return -1
    if x.doc > y.doc:
        return 1
    return 0


ctypedef struct Linked:
    long long story
    Py_ssize_t slot
    double rel
    long long doc


cdef int _by_story_slot(const void* a, const void* b) noexcept nogil:
    cdef const Linked* x = <const Linked*> a
    cdef const Linked* y = <const Linked*> b
    if x.story != y.story:
        return -1 if x.story < y.story else 1
    return (x.slot > y.slot) - (x.slot < y.slot)


cdef int _by_slot_only(const void* a, const void* b) noexcept nogil:
    cdef const Linked* x = <const Linked*> a
    cdef const Linked* y = <const Linked*> b
    return (x.slot > y.slot) - (x.slot < y.slot)


cdef class Index:
    """Index key → the placement ordinals of the items carrying it; per ordinal its time, item,
    story and figure mass; ``candidates`` proposes items for one newcomer."""

    cdef dict postings
    cdef double* ts
    cdef long long* doc
    cdef long long* story
    cdef double* figure_mass
    cdef char* alive
    # Scratch per slot, zero between calls: sums of one newcomer's walk.
    cdef double* hits
    cdef double* other
    cdef double* figures
    cdef double* declared
    cdef char* kept
    cdef Py_ssize_t* touched
    cdef Py_ssize_t n_touched
    cdef Py_ssize_t cap
    cdef readonly long long base
    cdef readonly long long next_ord
    cdef readonly bint in_order
    cdef double latest

    def __cinit__(self):
        self.postings = {}
        self.cap = 0
        self.base = 0
        self.next_ord = 0
        self.in_order = True
        self.latest = float("-inf")
        self._grow(1024)

    def __dealloc__(self):
        free(self.ts)
        free(self.doc)
        free(self.story)
        free(self.figure_mass)
        free(self.alive)
        free(self.hits)
        free(self.other)
        free(self.figures)
        free(self.declared)
        free(self.kept)
        free(self.touched)

    cdef void _grow(self, Py_ssize_t cap) except *:
        cdef Py_ssize_t old = self.cap
        self.ts = <double*> _realloc(self.ts, cap * sizeof(double))
        self.doc = <long long*> _realloc(self.doc, cap * sizeof(long long))
        self.story = <long long*> _realloc(self.story, cap * sizeof(long long))
        self.figure_mass = <double*> _realloc(self.figure_mass, cap * sizeof(double))
        self.alive = <char*> _realloc(self.alive, cap)
        self.hits = <double*> _realloc(self.hits, cap * sizeof(double))
        self.other = <double*> _realloc(self.other, cap * sizeof(double))
        self.figures = <double*> _realloc(self.figures, cap * sizeof(double))
        self.declared = <double*> _realloc(self.declared, cap * sizeof(double))
        self.kept = <char*> _realloc(self.kept, cap)
        self.touched = <Py_ssize_t*> _realloc(self.touched, cap * sizeof(Py_ssize_t))
        cdef Py_ssize_t extra = cap - old
        memset(self.ts + old, 0, extra * sizeof(double))
        memset(self.doc + old, 0, extra * sizeof(long long))
        memset(self.story + old, 0, extra * sizeof(long long))
        memset(self.figure_mass + old, 0, extra * sizeof(double))
        memset(self.alive + old, 0, extra)
        memset(self.hits + old, 0, extra * sizeof(double))
        memset(self.other + old, 0, extra * sizeof(double))
        memset(self.figures + old, 0, extra * sizeof(double))
        memset(self.declared + old, 0, extra * sizeof(double))
        memset(self.kept + old, 0, extra)
        self.cap = cap

    cdef void _compact(self, Py_ssize_t first):
        """Drop the ``first`` slots (all left the window): the ordinals they held are gone."""
        cdef Py_ssize_t keep = self.cap - first
        memmove(self.ts, self.ts + first, keep * sizeof(double))
        memmove(self.doc, self.doc + first, keep * sizeof(long long))
        memmove(self.story, self.story + first, keep * sizeof(long long))
        memmove(self.figure_mass, self.figure_mass + first, keep * sizeof(double))
        memmove(self.alive, self.alive + first, keep)
        memset(self.ts + keep, 0, first * sizeof(double))
        memset(self.doc + keep, 0, first * sizeof(long long))
        memset(self.story + keep, 0, first * sizeof(long long))
        memset(self.figure_mass + keep, 0, first * sizeof(double))
        memset(self.alive + keep, 0, first)
        self.base += first

    cpdef long long place(self, long long doc_id, double ts, double figure_mass, long long story, tuple keys) except -1:
        """Index one item under ``keys``; its placement ordinal."""
        cdef long long o = self.next_ord
        cdef Py_ssize_t i = o - self.base, first
        if i == self.cap:
            first = 0
            while first < self.cap and not self.alive[first]:
                first += 1
            if first >= self.cap // 2:
                self._compact(first)
            else:
                self._grow(2 * self.cap)
            i = o - self.base
        if ts < self.latest:
            self.in_order = False
        else:
            self.latest = ts
        self.ts[i] = ts
        self.doc[i] = doc_id
        self.story[i] = story
        self.figure_mass[i] = figure_mass
        self.alive[i] = 1
        self.next_ord = o + 1
        cdef dict postings = self.postings
        cdef array p
        for key in keys:
            p = postings.get(key)
            if p is None:
                p = _new_postings()
                postings[key] = p
            p.append(o)
        return o

    cpdef void remove(self, long long o, tuple keys) except *:
        """Take an item out of the index (it left the window)."""
        self.alive[o - self.base] = 0
        cdef dict postings = self.postings
        cdef array p
        for key in keys:
            p = postings[key]
            if p.data.as_longlongs[0] == o:
                del p[0]
            else:
                p.remove(o)
            if len(p) == 0:
                del postings[key]

    def candidates(
        self,
        tuple query,
        double fts,
        double window,
        double figure_mass,
        double light_figures,
        t,
    ):
        """The blocking step of ``Clusterer.add`` (``cluster``, point 2), for a newcomer published
        at ``fts`` with ``query`` ((key, weight, kind) in order) and figure mass: (candidate doc
        ids; per other story, (story, related weight, doc) of its item with the highest related
        weight, ties to the lower doc id, stories in the order their items first appear by
        ordinal)."""
        cdef double max_postings = t.max_postings
        cdef double rare = t.rare_postings
        cdef double max_figure_postings = t.max_figure_postings
        cdef double min_hits = t.min_candidate_hits
        cdef double floor = t.related
        cdef double related_window = t.related_hours * 3600.0
        cdef double min_figures = t.min_figures
        cdef Py_ssize_t top = t.max_candidates
        cdef double unseen_figures = 0.0
        cdef double weight, scaled, c_hits, c_other, c_fig, c_decl, ets
        cdef bint exempt, any_other = False, any_figure = False, any_declared = False
        cdef int kind
        cdef Py_ssize_t n, k, slot
        cdef long long* data
        cdef long long base = self.base
        cdef bint in_order = self.in_order
        cdef set seen = set()
        cdef dict postings_of = self.postings
        cdef array p
        cdef double lo = fts - window, hi = fts + window
        # The arrays in locals: the walk below is the hot loop of clustering.
        cdef double* ts = self.ts
        cdef double* hits = self.hits
        cdef double* other = self.other
        cdef double* figures = self.figures
        cdef double* declared = self.declared
        cdef char* kept = self.kept
        cdef Py_ssize_t* touched = self.touched
        cdef Py_ssize_t n_touched = 0
        self.n_touched = 0
        for entry in query:
            key = entry[0]
            if key in seen:
                continue
            seen.add(key)
            p = postings_of.get(key)
            if p is None:
                continue
            n = len(p)
            if n == 0:
                continue
            weight = entry[1]
            kind = entry[2]
            exempt = False
            if weight >= 100.0:
                c_hits, c_other, c_fig, c_decl = weight, weight, 0.0, 1.0
                exempt = any_other = any_declared = True
            elif weight < 5.0:
                scaled = weight * rare / n if n > rare else weight
                if kind == _FIGURE:
                    if n > max_figure_postings:
                        unseen_figures += weight
                        continue
                    c_hits, c_other, c_fig, c_decl = scaled, 0.0, weight, 0.0
                    any_figure = True
                else:
                    if n > max_postings:
                        continue
                    if kind == _BAND:
                        c_hits, c_other, c_fig, c_decl = scaled, scaled, 0.0, 0.0
                        any_other = True
                    else:
                        c_hits, c_other, c_fig, c_decl = scaled, 0.0, 0.0, 0.0
            elif kind == _FIGURE:
                c_hits, c_other, c_fig, c_decl = weight, weight, weight, 0.0
                any_other = any_figure = True
            else:
                c_hits, c_other, c_fig, c_decl = weight, weight, 0.0, 1.0
                any_other = any_declared = True
            data = p.data.as_longlongs
            k = 0
            if in_order and not exempt:
                # Postings are in time order: skip the items before the window by bisection.
                k = _first_from(data, n, base, ts, lo)
            for k in range(k, n):
                slot = data[k] - base
                ets = ts[slot]
                if not exempt:
                    if in_order:
                        if not (ets >= lo and ets <= hi):
                            continue
                    elif not (fabs(ets - fts) <= window):
                        continue
                if not kept[slot]:
                    kept[slot] = 1
                    touched[n_touched] = slot
                    n_touched += 1
                hits[slot] += c_hits
                other[slot] += c_other
                figures[slot] += c_fig
                declared[slot] += c_decl
        self.n_touched = n_touched
        try:
            return self._select(
                top, min_hits, floor, related_window, fts, figure_mass, min_figures,
                light_figures + unseen_figures, any_other, any_figure, any_declared,
            )
        finally:
            for k in range(self.n_touched):
                slot = self.touched[k]
                self.kept[slot] = 0
                self.hits[slot] = 0.0
                self.other[slot] = 0.0
                self.figures[slot] = 0.0
                self.declared[slot] = 0.0
            self.n_touched = 0

    cdef tuple _select(
        self, Py_ssize_t top, double min_hits, double floor, double related_window, double fts,
        double figure_mass, double min_figures, double light, bint any_other, bint any_figure,
        bint any_declared,
    ):
        cdef Py_ssize_t n = self.n_touched, k, m = 0, slot, room, taken
        cdef Ranked* ranked = <Ranked*> malloc((n + 1) * sizeof(Ranked))
        cdef Linked* linked = <Linked*> malloc((n + 1) * sizeof(Linked))
        cdef Py_ssize_t nl = 0, m_out = 0, j, best
        if ranked == NULL or linked == NULL:
            free(ranked)
            free(linked)
            raise MemoryError()
        cdef list out = []
        cdef list related = []
        cdef double need, rel
        cdef bint strong, prefilter
        try:
            for k in range(n):
                slot = self.touched[k]
                if self.hits[slot] >= min_hits:
                    ranked[m].hits = self.hits[slot]
                    ranked[m].doc = self.doc[slot]
                    ranked[m].slot = slot
                    m += 1
            qsort(ranked, m, sizeof(Ranked), _by_rank)
            prefilter = figure_mass >= 0.5
            need = min_figures * figure_mass - light - 1e-9
            room = top
            for k in range(m):
                slot = ranked[k].slot
                strong = (any_declared and self.declared[slot] > 0) or (any_figure and self.figures[slot] > 0)
                if k < top:
                    if strong:
                        room -= 1
                elif room <= 0:
                    break
                elif strong:
                    room -= 1
                else:
                    continue
                if prefilter and not (
                    (any_declared and self.declared[slot] > 0)
                    or (self.figures[slot] if any_figure else 0.0) >= need
                    or self.figure_mass[slot] < 0.5
                ):
                    continue
                out.append(self.doc[slot])
            # Related: the items over the bar, then per other story the best (most related
            # weight, ties to the lower id), stories in the order of their first item's ordinal.
            for k in range(n):
                slot = self.touched[k]
                rel = self.hits[slot] - self.other[slot] if any_other else self.hits[slot]
                if self.hits[slot] >= floor and rel >= floor and fabs(self.ts[slot] - fts) <= related_window:
                    linked[nl].story = self.story[slot]
                    linked[nl].slot = slot
                    linked[nl].rel = rel
                    linked[nl].doc = self.doc[slot]
                    nl += 1
            qsort(linked, nl, sizeof(Linked), _by_story_slot)
            k = 0
            while k < nl:
                # ``linked[k]`` is the story's first item by ordinal; find its best.
                best = k
                j = k + 1
                while j < nl and linked[j].story == linked[k].story:
                    if linked[j].rel > linked[best].rel or (
                        linked[j].rel == linked[best].rel and linked[j].doc < linked[best].doc
                    ):
                        best = j
                    j += 1
                linked[m_out].story = linked[k].story
                linked[m_out].slot = linked[k].slot
                linked[m_out].rel = linked[best].rel
                linked[m_out].doc = linked[best].doc
                m_out += 1
                k = j
            qsort(linked, m_out, sizeof(Linked), _by_slot_only)
            for k in range(m_out):
                related.append((linked[k].story, linked[k].rel, linked[k].doc))
            return out, related
        finally:
            free(ranked)
            free(linked)


cdef inline Py_ssize_t _first_from(
    const long long* data, Py_ssize_t n, long long base, const double* ts, double lo
) noexcept nogil:
    """The first posting whose item was published at ``lo`` or later (postings in time order)."""
    cdef Py_ssize_t left = 0, right = n, mid
    while left < right:
        mid = (left + right) // 2
        if ts[data[mid] - base] < lo:
            left = mid + 1
        else:
            right = mid
    return left


cdef array _new_postings():
    return _QARRAY.__copy__()


cdef void* _realloc(void* ptr, size_t size) except NULL:
    cdef void* out = realloc(ptr, size)
    if out == NULL:
        raise MemoryError()
    return out
