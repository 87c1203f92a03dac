"""A document's MinHash signature in Python and numpy: the oracle of ``_minhash.pyx``.

The shingles: three consecutive ``\\w+`` words of the lower-cased text joined by a space, or in
Chinese and Japanese three consecutive characters of the Han/kana runs put together; fewer than
five distinct shingles give no signature. Then datasketch's ``affine32`` scheme: crc32 of each
shingle's UTF-8 bytes, murmur3's ``fmix32``, ``a·h + b mod 2³²`` per permutation, the minimum
over the shingles.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

_HAN_KANA_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]+")
_WORD = re.compile(r"\w+")
_U16, _U13 = np.uint32(16), np.uint32(13)
_FMIX_1, _FMIX_2 = np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35)


def shingles(text: str, cjk: bool) -> set[str]:
    if cjk:
        joined = "".join(_HAN_KANA_RUN.findall(text))
        return {joined[i : i + 3] for i in range(max(0, len(joined) - 2))}
    words = _WORD.findall(text.lower())
    return {" ".join(w) for w in zip(words, words[1:], words[2:], strict=False)}


def signature(found: set[str], a: np.ndarray, b: np.ndarray) -> tuple[int, ...] | None:
    if len(found) < 5:
        return None
    crc = zlib.crc32
    hv = np.fromiter((crc(s.encode()) for s in found), dtype=np.uint32, count=len(found))
    hv ^= hv >> _U16
    hv *= _FMIX_1
    hv ^= hv >> _U13
    hv *= _FMIX_2
    hv ^= hv >> _U16
    phv = hv[:, None] * a + b
    return tuple(phv.min(axis=0).tolist())


def minhash(text: str, cjk: bool, a: np.ndarray, b: np.ndarray) -> tuple[int, ...] | None:
    return signature(shingles(text, cjk), a, b)
