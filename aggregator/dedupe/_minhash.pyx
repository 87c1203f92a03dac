# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""A document's MinHash signature, in C (built by the package build: ``setup.py``).

datasketch's ``affine32`` scheme over shingles: crc32 of each shingle's UTF-8 bytes, murmur3's
``fmix32``, then per permutation ``a·h + b mod 2³²`` and the minimum over the shingles. Python
paid for a ``str.join``, an ``encode`` and a crc32 call per shingle and a shingles × permutations
numpy matrix; here a word is encoded once, the crc runs over the three words of a shingle in
place, and the minimum is kept as it goes (a shingle seen twice changes no minimum, so the
shingles need no set). ``tests/dedupe_oracle/minhash.py`` is the same signature in Python and
numpy; ``tests/test_dedupe_native.py`` checks both agree.
"""

from libc.stdint cimport uint32_t

cdef uint32_t _CRC[256]
cdef Py_ssize_t MIN_SHINGLES = 5
"""Fewer distinct shingles than this: no signature (too short to compare by)."""


cdef void _crc_table() noexcept:
    cdef uint32_t c
    cdef int i, k
    for i in range(256):
        c = <uint32_t>i
        for k in range(8):
            c = (<uint32_t>0xEDB88320U ^ (c >> 1)) if (c & 1) else (c >> 1)
        _CRC[i] = c


_crc_table()


cdef inline uint32_t _crc_update(uint32_t crc, const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        crc = _CRC[(crc ^ p[i]) & 0xFF] ^ (crc >> 8)
    return crc


cdef inline uint32_t _fmix(uint32_t h) noexcept nogil:
    h ^= h >> 16
    h *= <uint32_t>0x85EBCA6BU
    h ^= h >> 13
    h *= <uint32_t>0xC2B2AE35U
    h ^= h >> 16
    return h


cdef inline void _keep(uint32_t h, const uint32_t[:] a, const uint32_t[:] b, uint32_t* mins) noexcept nogil:
    cdef Py_ssize_t k
    cdef uint32_t v
    h = _fmix(h)
    for k in range(a.shape[0]):
        v = a[k] * h + b[k]
        if v < mins[k]:
            mins[k] = v


cdef tuple _signature(uint32_t* mins, Py_ssize_t n):
    return tuple([mins[k] for k in range(n)])


def minhash_words(list words, const uint32_t[:] a, const uint32_t[:] b):
    """The signature of the shingles of ``words`` (each three consecutive words joined by a
    space), or None below five distinct shingles."""
    cdef Py_ssize_t n = len(words), i, k, perms = a.shape[0]
    if n < 3 or b.shape[0] != perms:
        if b.shape[0] != perms:
            raise ValueError("a and b differ in length")
        return None
    seen = set()
    for i in range(n - 2):
        seen.add((words[i], words[i + 1], words[i + 2]))
        if len(seen) >= MIN_SHINGLES:
            break
    if len(seen) < MIN_SHINGLES:
        return None
    cdef list encoded = [(<str>w).encode() for w in words]
    mins = bytearray(4 * perms)
    cdef uint32_t* mins_p = <uint32_t*><char*>mins
    for k in range(perms):
        mins_p[k] = <uint32_t>0xFFFFFFFFU
    cdef bytes w0, w1, w2
    cdef uint32_t crc
    cdef unsigned char space = 32
    for i in range(n - 2):
        w0 = <bytes>encoded[i]
        w1 = <bytes>encoded[i + 1]
        w2 = <bytes>encoded[i + 2]
        crc = _crc_update(<uint32_t>0xFFFFFFFFU, <const unsigned char*><char*>w0, len(w0))
        crc = _crc_update(crc, &space, 1)
        crc = _crc_update(crc, <const unsigned char*><char*>w1, len(w1))
        crc = _crc_update(crc, &space, 1)
        crc = _crc_update(crc, <const unsigned char*><char*>w2, len(w2))
        _keep(crc ^ <uint32_t>0xFFFFFFFFU, a, b, mins_p)
    return _signature(mins_p, perms)


def minhash_strings(shingles, const uint32_t[:] a, const uint32_t[:] b):
    """The signature of ``shingles`` (an iterable of distinct strings, at least one)."""
    cdef Py_ssize_t k, perms = a.shape[0]
    if b.shape[0] != perms:
        raise ValueError("a and b differ in length")
    mins = bytearray(4 * perms)
    cdef uint32_t* mins_p = <uint32_t*><char*>mins
    for k in range(perms):
        mins_p[k] = <uint32_t>0xFFFFFFFFU
    cdef bytes raw
    for s in shingles:
        raw = (<str>s).encode()
        _keep(_crc_update(<uint32_t>0xFFFFFFFFU, <const unsigned char*><char*>raw, len(raw)) ^ <uint32_t>0xFFFFFFFFU, a, b, mins_p)
    return _signature(mins_p, perms)
