"""URLs in one spelling: :func:`canonical_url` (ingest) and :func:`identity_url` (dedupe's key).

The only URL normalizer of the project: the normalize stage stores canonical URLs, dedupe
compares their identity form.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

_TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "twclid",
        "ttclid",
        "igshid",
        "li_fat_id",
        "mc_cid",
        "mc_eid",
        "mkt_tok",
        "ref",
        "ref_src",
        "ref_url",
        "referrer",
        "_hsenc",
        "_hsmi",
        "__hstc",
        "__hssc",
        "__hsfp",
        "hsctatracking",
        "_ga",
        "_gl",
        "oly_anon_id",
        "oly_enc_id",
        "vero_id",
        "vero_conv",
        "rss_id",
        "at_medium",
        "at_campaign",
        "cmpid",
        "s_cid",
        "spm",
    }
)
_TRACKING_PREFIXES = ("utm_", "pk_", "mtm_")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_URL_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def canonical_url(url: str, base: str | None = None) -> str | None:
    """An absolute http(s) URL in one spelling, or None when ``url`` cannot be made one.

    Lower-case scheme and host, no default port, no fragment, tracking parameters removed,
    unsafe characters percent-encoded (existing escapes kept), ``&amp;`` artefacts of
    double-escaped feeds undone. Idempotent: ``canonical_url(canonical_url(u)) == canonical_url(u)``.
    """
    if PLAIN_URL.fullmatch(url):  # already in canonical spelling: most image and body URLs
        return url
    return _canonical_url(url, base)


# An absolute http(s) URL that canonical_url returns unchanged, whatever the base: lower-case
# host without port, a path of characters that need no escaping, no query, no fragment.
PLAIN_URL = re.compile(r"https?://[a-z0-9_-]+(?:\.[a-z0-9_-]+)*/[A-Za-z0-9/._~%-]*")


@functools.lru_cache(maxsize=8192)
def _canonical_url(url: str, base: str | None) -> str | None:
    url = _URL_CONTROL.sub("", url.replace("&amp;", "&")).strip()
    if not url:
        return None
    try:
        parts = urlsplit(url)
        # urljoin gives back an absolute http(s) URL with a host as it was (but for an empty
        # ";params", which it drops), so only relative and odd URLs pay for it.
        if base and not (parts.netloc and parts.scheme in _DEFAULT_PORTS and ";" not in parts.path):
            parts = urlsplit(urljoin(base, url))
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            return None
        host = _canonical_host(parts.hostname or "")
        port = parts.port
        if host is None:
            return None
        netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
        path = quote(parts.path, safe=_PATH_SAFE) or "/"
        query = _strip_tracking(parts.query)
    except ValueError:  # also UnicodeError: bad ports, brackets, IDNA, lone surrogates
        return None
    return urlunsplit((scheme, netloc, path, query, ""))


_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def _canonical_host(host: str) -> str | None:
    """Lower-case ASCII host (IDNA for non-ASCII names, brackets for IPv6), None if invalid."""
    host = host.rstrip(".").lower()
    if ":" in host:
        return f"[{ipaddress.IPv6Address(host).compressed}]"
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    return host if _HOST_NAME.fullmatch(host) else None


def _strip_tracking(query: str) -> str:
    if not query:
        return ""
    kept = []
    for pair in query.split("&"):
        if not pair:
            continue
        key = pair.split("=", 1)[0].lower()
        if key in _TRACKING_PARAMS or key.startswith(_TRACKING_PREFIXES):
            continue
        kept.append(quote(pair, safe=_QUERY_SAFE))
    return "&".join(kept)


def identity_url(url: str | None) -> str | None:
    """Dedupe's key of a URL: its canonical spelling (:func:`canonical_url`) with the differences
    that never name another article folded: ``https`` for ``http``, no ``www.``, no trailing slash.

    Anything that is no http(s) URL (a ``urn:`` guid, a bare id) keeps its own spelling, stripped.
    """
    if not url:
        return None
    url = canonical_url(url.strip()) or url
    p = urlsplit(url.strip())
    if not p.netloc:
        return url.strip() or None
    host = p.netloc.lower()
    if host.startswith("www."):
        host = host[4:]
    return urlunsplit(
        (
            "https" if p.scheme.lower() in ("http", "https") else p.scheme.lower(),
            host,
            p.path.rstrip("/"),
            p.query,
            "",
        )
    )
