"""babelwire's ingest pipeline: scheduler → fetch → parse → normalize → decide → store → dedupe."""

import os

# numpy's OpenBLAS starts a thread per core that busy-waits after each call; babelwire does no
# linear algebra (numpy only adds up arrays), and on a 2-core machine those threads took the
# core that parse and dedupe workers run on (clustering 100k items: ~24 s with them, ~18 s
# without). Set before numpy is first imported; an operator's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from core.locales import LOCALES

__all__ = ["LOCALES"]
