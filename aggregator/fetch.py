"""Fetch stage: one conditional GET per source, with every failure returned as data.

``Fetcher.fetch`` never raises for a feed's fault; it returns a frozen ``FetchResult`` whose
``error`` is short text for the source row. The failure kinds:

- ``invalid URL: …``, ``unsupported scheme 'ftp'``     the URL cannot be fetched at all
- ``refused private address 10.0.0.5``                 SSRF guard (off with allow_private_feeds)
- ``DNS lookup failed for HOST``                       the host does not resolve
- ``connection refused``, ``connection failed: …``     nothing listens / the network is down
- ``TLS error: …``                                     handshake or certificate failure
- ``timeout after 20s``                                one exchange took longer than fetch_timeout_s
- ``HTTP 404``, ``HTTP 410`` (``gone``), ``HTTP 429`` / ``HTTP 503`` (with ``retry_after_s``)
- ``too many redirects (more than 5)``, ``redirect loop at URL``, ``redirect without Location``
- ``body larger than N bytes``                         counted after decompression (gzip bombs)
- ``could not decode gzip body``, ``unsupported content encoding 'br'``
- ``protocol error: …``, ``connection lost: …``        the server broke HTTP or the socket mid-response
- ``unexpected error: …``                              a bug; logged with its traceback, still a result

A 304 is not an error: ``not_modified`` is true, there is no body, and parse is skipped.

Redirects are followed here, one hop at a time, so every hop passes the scheme check, the SSRF
check and the per-host concurrency cap.

The SSRF check (unless ``allow_private_feeds``) lives where the socket is opened: the client's
network backend (:class:`GuardedBackend`) resolves the host **once**, refuses it when any address
is not public (:func:`is_public_address`: private, loopback, link-local and cloud-metadata ranges,
also when wrapped in IPv4-mapped, NAT64, 6to4 or Teredo IPv6 forms), and connects to exactly the
address it checked, so a DNS answer that changes between a check and a connect (rebinding) never
reaches the socket. Numeric hosts are read as the C library reads them (``2130706433``,
``0177.0.0.1``, ``0x7f.1``, ``127.1`` are all 127.0.0.1) and never sent to DNS. A client passed
in (tests' mock transports) is checked before each request instead, and every response's peer
address is checked again.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ipaddress
import logging
import re
import socket
import ssl
import sys
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import NamedTuple

# httpx imports its command-line client when click and rich are installed (a fifth of its import
# time, paid by every `poll --once`); babelwire never runs it. A None entry makes that one import
# fail, which httpx expects (its `httpx` console command then says what is missing).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpcore  # noqa: E402
import httpx  # noqa: E402

from aggregator.settings import Settings  # noqa: E402

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Host and port to the IP addresses a connection could reach; injectable for tests."""
AddressPolicy = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool]
"""Whether a feed may be fetched from an address (default :func:`is_public_address`)."""

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
PERMANENT_REDIRECTS = frozenset({301, 308})
RETRY_AFTER_STATUSES = frozenset({429, 503})
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
ACCEPT_ENCODING = "gzip, deflate"
"""Only what ``_Inflater`` decodes with a bounded output size."""
INFLATE_STEP = 64 * 1024


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one fetch of one source URL gave.

    ``etag`` / ``last_modified`` are the validators to store for the next conditional GET; they
    are meaningful when ``ok`` or ``not_modified`` (a 304 keeps the ones sent unless the server
    sent new ones). ``permanent_redirect`` is true when every hop was a 301/308, so the source's
    URL may be updated to ``final_url``.
    """

    url: str
    final_url: str
    status: int | None = None
    body: bytes | None = None
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False
    gone: bool = False
    error: str | None = None
    retry_after_s: float | None = None
    cache_hint_s: float | None = None
    permanent_redirect: bool = False
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """A 200 with a body: hand it to parse."""
        return self.status == 200 and self.body is not None and self.error is None


class _Redirect(NamedTuple):
    status: int
    location: httpx.URL


class _Refused(Exception):
    """Internal: a hop must not be fetched; its message becomes ``FetchResult.error``."""


class Fetcher:
    """Fetches feed URLs politely and safely; one instance per event loop, shared by all polls."""

    def __init__(
        self,
        settings: Settings,
        client: httpx.AsyncClient | None = None,
        *,
        resolve: Resolver | None = None,
        is_public: AddressPolicy | None = None,
    ) -> None:
        self._settings = settings
        self._owns_client = client is None
        self._guard = AddressGuard(resolve or _getaddrinfo, is_public or is_public_address)
        self._client = client if client is not None else build_client(settings, self._guard)
        self._host_slots: dict[str, _HostSlot] = {}
        """Hosts being fetched now (an entry leaves with its last fetch: a worker polling a
        thousand hosts for weeks holds only those in flight)."""
        self._slots = asyncio.Semaphore(settings.fetch_concurrency)
        self._headers = {
            "User-Agent": settings.user_agent,
            "Accept": ACCEPT,
            "Accept-Encoding": ACCEPT_ENCODING,
        }

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this fetcher built it; a client passed in is the caller's."""
        if self._owns_client:
            await self._client.aclose()

    async def fetch(self, url: str, etag: str | None = None, last_modified: str | None = None) -> FetchResult:
        """GET ``url`` (conditionally when validators are given); never raises for the feed's fault."""
        started = time.perf_counter()
        headers = dict(self._headers)
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            result = await self._follow(url, headers, etag, last_modified)
        except Exception as exc:  # the contract is "never raise": a batch must go on
            log.exception("unexpected failure fetching %s", url)
            result = FetchResult(url=url, final_url=url, error=f"unexpected error: {exc!r}")
        return replace(result, elapsed_s=time.perf_counter() - started)

    async def _follow(
        self, url: str, headers: dict[str, str], etag: str | None, last_modified: str | None
    ) -> FetchResult:
        try:
            target = httpx.URL(url)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            return FetchResult(url=url, final_url=url, error=f"invalid URL: {exc}")
        seen: set[httpx.URL] = set()
        permanent: bool | None = None  # None until the first redirect
        status: int | None = None
        for _ in range(self._settings.max_redirects + 1):
            seen.add(target)
            step = await self._hop(url, target, headers, etag, last_modified)
            if isinstance(step, FetchResult):
                return replace(step, permanent_redirect=bool(permanent))
            status = step.status
            permanent = (permanent is not False) and status in PERMANENT_REDIRECTS
            if step.location in seen:
                return FetchResult(
                    url=url, final_url=str(target), status=status, error=f"redirect loop at {step.location}"
                )
            target = step.location
        return FetchResult(
            url=url,
            final_url=str(target),
            status=status,
            error=f"too many redirects (more than {self._settings.max_redirects})",
        )

    async def _hop(
        self,
        url: str,
        target: httpx.URL,
        headers: dict[str, str],
        etag: str | None,
        last_modified: str | None,
    ) -> FetchResult | _Redirect:
        """One request/response exchange, inside the host's slot and one deadline."""
        final_url = str(target)

        def failed(error: str) -> FetchResult:
            return FetchResult(url=url, final_url=final_url, error=error)

        if not target.scheme:
            return failed("invalid URL: no scheme")
        if target.scheme not in ("http", "https"):
            return failed(f"unsupported scheme {target.scheme!r}")
        if not target.host:
            return failed("invalid URL: no host")
        if target.port is not None and not 0 < target.port < 65536:
            return failed(f"invalid URL: port {target.port} out of range")
        if target.host.rstrip(".").lower().rsplit(".", 1)[-1] == "invalid":
            # RFC 6761 §6.4: ``.invalid`` names never resolve; answer at once, ask no resolver.
            return failed(f"DNS lookup failed for {target.host}")
        timeout = self._settings.fetch_timeout_s
        async with self._host_slot(target.host), self._slots:
            try:
                async with asyncio.timeout(timeout):
                    return await self._exchange(url, target, headers, etag, last_modified)
            except _Refused as exc:
                return failed(str(exc))
            except (TimeoutError, httpx.TimeoutException):
                return failed(f"timeout after {timeout:g}s")
            except httpx.ConnectError as exc:
                return failed(_connect_failure(exc, target.host))
            except httpx.UnsupportedProtocol as exc:
                return failed(f"invalid URL: {exc}")
            except (httpx.RemoteProtocolError, httpx.LocalProtocolError) as exc:
                return failed(f"protocol error: {exc or type(exc).__name__}")
            except (httpx.ReadError, httpx.WriteError) as exc:
                return failed(f"connection lost: {exc or type(exc).__name__}")
            except httpx.InvalidURL as exc:
                return failed(f"invalid URL: {exc}")
            except httpx.DecodingError:
                return failed("could not decode body")
            except httpx.TransportError as exc:
                return failed(f"connection failed: {exc or type(exc).__name__}")
            except OSError as exc:  # e.g. a resolver thread failing in an unforeseen way
                return failed(f"connection failed: {exc}")

    async def _exchange(
        self,
        url: str,
        target: httpx.URL,
        headers: dict[str, str],
        etag: str | None,
        last_modified: str | None,
    ) -> FetchResult | _Redirect:
        guard = not self._settings.allow_private_feeds
        if guard and not self._owns_client:  # an owned client checks where it connects
            await self._guard.addresses(target.raw_host.decode("ascii"), _port_of(target))
        timeout = self._settings.fetch_timeout_s
        async with self._client.stream(
            "GET", target, headers=headers, follow_redirects=False, timeout=timeout
        ) as response:
            if guard:
                self._guard.check_peer(response)
            status = response.status_code
            rh = response.headers
            if status in REDIRECT_STATUSES:
                location = rh.get("location")
                if not location:
                    return FetchResult(
                        url=url, final_url=str(target), status=status, error="redirect without Location"
                    )
                try:
                    return _Redirect(status, target.join(location.strip()).copy_with(fragment=None))
                except (httpx.InvalidURL, ValueError) as exc:
                    raise _Refused(f"invalid redirect Location: {exc}") from None
            result = FetchResult(
                url=url,
                final_url=str(target),
                status=status,
                content_type=rh.get("content-type"),
                cache_hint_s=cache_hint_s(rh),
            )
            if status == 304:
                return replace(
                    result,
                    not_modified=True,
                    etag=rh.get("etag") or etag,
                    last_modified=rh.get("last-modified") or last_modified,
                )
            if status != 200:
                retry = retry_after_s(rh) if status in RETRY_AFTER_STATUSES else None
                return replace(result, error=f"HTTP {status}", gone=status == 410, retry_after_s=retry)
            body_or_error = await _read_capped(response, self._settings.max_body_bytes)
            if isinstance(body_or_error, str):
                return replace(result, error=body_or_error)
            return replace(
                result,
                body=body_or_error,
                etag=rh.get("etag"),
                last_modified=rh.get("last-modified"),
            )

    @contextlib.asynccontextmanager
    async def _host_slot(self, host: str) -> AsyncIterator[None]:
        slot = self._host_slots.get(host)
        if slot is None:
            slot = self._host_slots[host] = _HostSlot(asyncio.Semaphore(self._settings.per_host_concurrency))
        slot.users += 1
        try:
            async with slot.semaphore:
                yield
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._host_slots[host]


@dataclass(slots=True)
class _HostSlot:
    """One host's fetch limit, and how many fetches hold or wait for it."""

    semaphore: asyncio.Semaphore
    users: int = 0


def _port_of(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
"""RFC 6052's well-known prefix: the last 32 bits are the IPv4 address a NAT64 gateway reaches."""


def is_public_address(ip: IPAddress) -> bool:
    """Whether ``ip`` is a globally routable unicast address, and so is any IPv4 address it carries
    (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::a.b.c.d``, 6to4 ``2002:AABB:CCDD::``, Teredo's
    client). Private, loopback, link-local (cloud metadata 169.254.169.254, fe80::), shared
    (100.64/10, Alibaba's metadata), unique-local (fd00:ec2::254), multicast, reserved and
    unspecified addresses are not."""
    if isinstance(ip, ipaddress.IPv6Address):
        carried: list[ipaddress.IPv4Address] = []
        if ip.ipv4_mapped is not None:
            carried.append(ip.ipv4_mapped)
        if ip in NAT64:
            carried.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None:
            carried.append(ip.sixtofour)
        if ip.teredo is not None:
            carried.append(ip.teredo[1])
        if carried:
            return all(is_public_address(v4) for v4 in carried)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback)


_NUMBER = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")
_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")


def numeric_host(host: str) -> IPAddress | None:
    """The address a numeric host names, read as ``inet_aton`` and the URL parsers of browsers read
    it (one to four parts, each decimal, octal with a leading 0, or hex with 0x; the last part
    fills the remaining bytes), or an IPv6 literal (with or without brackets); None for a name."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in bare:
        try:
            return ipaddress.IPv6Address(bare.split("%", 1)[0])
        except ValueError:
            return None
    if not _NUMERIC_HOST.fullmatch(bare):
        return None
    parts = bare.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMBER.fullmatch(p) for p in parts):
        return None
    values = [
        int(p[2:] or "0", 16) if p[:2] in ("0x", "0X") else int(p, 8 if p.startswith("0") else 10)
        for p in parts
    ]
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        raise _Refused(f"invalid numeric address {host}")
    number = 0
    for v in head:
        number = number * 256 + v
    return ipaddress.IPv4Address(number * 256 ** (4 - len(head)) + last)


class AddressGuard:
    """Where a fetch may connect: resolves a host once and refuses it unless every address is public."""

    def __init__(self, resolve: Resolver, is_public: AddressPolicy = is_public_address) -> None:
        self.resolve = resolve
        self.is_public = is_public

    async def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses of ``host``; raises :class:`_Refused` when it must not be fetched."""
        literal = numeric_host(host)
        if literal is not None:
            found = [literal]
        else:
            try:
                answers = await self.resolve(host, port)
            except (socket.gaierror, UnicodeError):
                raise _Refused(f"DNS lookup failed for {host}") from None
            try:
                found = [ipaddress.ip_address(a.split("%", 1)[0]) for a in answers]
            except ValueError:
                raise _Refused(f"DNS lookup for {host} gave an unparsable address") from None
        if not found:
            raise _Refused(f"DNS lookup failed for {host}")
        for ip in found:
            self.refuse(ip)
        return [str(ip) for ip in found]

    def refuse(self, ip: IPAddress) -> None:
        if not self.is_public(ip):
            raise _Refused(f"refused private address {_shown(ip)}")

    def check_peer(self, response: httpx.Response) -> None:
        """Check the address the connection really reached (absent with mock transports)."""
        stream = response.extensions.get("network_stream")
        if stream is None:
            return
        peer = stream.get_extra_info("server_addr")
        if isinstance(peer, tuple) and peer:
            try:
                ip = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
            except ValueError:
                raise _Refused(f"refused unparsable address {peer[0]!r}") from None
            self.refuse(ip)


def _shown(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped address is named by the IPv4 address it maps."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the SSRF check at connect time: the host is resolved once,
    every address checked, and the socket opened to a checked address (the next one if it
    refuses), never to a name another lookup could answer differently. TLS still names the host
    (SNI and certificate check use the URL's host, not the address)."""

    def __init__(self, guard: AddressGuard) -> None:
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._guard.addresses(host, port)
        for n, address in enumerate(addresses):
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError:
                if n == len(addresses) - 1:
                    raise
        raise AssertionError("unreachable: addresses is never empty")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise _Refused("refused a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class LazyTLSPool(httpcore.AsyncConnectionPool):
    """httpcore's connection pool with one TLS context (httpx's: certifi's CA bundle, verified),
    built on the first https connection: loading the bundle takes 0.1 s, which a round of plain
    http feeds (or of 304s on kept-alive connections) does not pay."""

    def create_connection(self, origin: httpcore.Origin) -> httpcore.AsyncConnectionInterface:
        if origin.scheme != b"http" and self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context(trust_env=False)
        return super().create_connection(origin)


def build_client(settings: Settings, guard: AddressGuard | None = None) -> httpx.AsyncClient:
    """The shared client: pool sized for fetch_concurrency, redirects left to ``Fetcher``; with a
    ``guard`` and private feeds refused, it connects only where the guard allows (SSRF).

    ``trust_env`` is off so proxy variables cannot reroute feeds (or loopback tests) silently,
    and so the peer-address check sees the feed server, not a proxy.
    """
    n = settings.fetch_concurrency
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    # httpx takes neither a network backend nor a TLS context built later: its pool is rebuilt
    # alike (the guarded backend when private feeds are refused, TLS on the first https feed).
    # The transport's own context is never used: one without any trusted certificate, so it
    # could only refuse.
    transport = httpx.AsyncHTTPTransport(
        verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), limits=limits, trust_env=False
    )
    guarded = guard is not None and not settings.allow_private_feeds
    transport._pool = LazyTLSPool(
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(guard) if guarded and guard is not None else None,
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(settings.fetch_timeout_s),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": settings.user_agent},
    )


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(sockaddr[0]) for *_, sockaddr in infos]


def _connect_failure(exc: BaseException, host: str) -> str:
    for cause in _causes(exc):
        if isinstance(cause, socket.gaierror):
            return f"DNS lookup failed for {host}"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {cause.reason or cause}"
    return f"connection failed: {exc or type(exc).__name__}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it was raised from, and the members of exception groups, in order."""
    stack = [exc]
    seen: set[int] = set()
    while stack:
        current = stack.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)


class _Inflater:
    """Decompresses gzip/deflate in slices of at most INFLATE_STEP bytes.

    httpx's own decoders inflate a whole network chunk at once: 64 KB of gzipped zeros become
    64 MB before any cap can look at them. Slicing keeps memory near the body cap.
    """

    def __init__(self, encoding: str) -> None:
        self._raw_fallback = encoding == "deflate"
        wbits = zlib.MAX_WBITS if self._raw_fallback else zlib.MAX_WBITS | 32
        self._z = zlib.decompressobj(wbits)
        self._started = False

    def inflate(self, data: bytes) -> Iterator[bytes]:
        while data and not self._z.eof:
            try:
                out = self._z.decompress(data, INFLATE_STEP)
            except zlib.error:
                if self._started or not self._raw_fallback:
                    raise
                # Some servers send raw deflate instead of the zlib format the RFC names.
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                self._raw_fallback = False
                continue
            self._started = True
            data = self._z.unconsumed_tail
            if out:
                yield out
            while not data and len(out) == INFLATE_STEP and not self._z.eof:
                out = self._z.decompress(b"", INFLATE_STEP)
                if out:
                    yield out

    def flush(self) -> bytes:
        return b"" if self._z.eof else self._z.flush()


def _inflater_for(content_encoding: str) -> _Inflater | None:
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        return _Inflater("deflate" if codings[0] == "deflate" else "gzip")
    raise ValueError(content_encoding)


async def _read_capped(response: httpx.Response, cap: int) -> bytes | str:
    """The decoded body, or an error text as soon as it passes ``cap`` bytes (stops reading)."""
    too_large = f"body larger than {cap} bytes"
    if response.is_stream_consumed:  # built in memory (mock transports): httpx already decoded it
        return too_large if len(response.content) > cap else response.content
    encoding = response.headers.get("content-encoding", "")
    try:
        inflater = _inflater_for(encoding)
    except ValueError:
        return f"unsupported content encoding {encoding!r}"
    declared = response.headers.get("content-length", "")
    if inflater is None and declared.isdigit() and int(declared) > cap:
        return too_large
    parts: list[bytes] = []
    size = 0
    try:
        async for raw in response.aiter_raw():
            for part in inflater.inflate(raw) if inflater is not None else (raw,):
                size += len(part)
                if size > cap:
                    return too_large
                parts.append(part)
        if inflater is not None:
            tail = inflater.flush()
            if size + len(tail) > cap:
                return too_large
            parts.append(tail)
    except zlib.error:
        return f"could not decode {encoding.strip().lower()} body"
    return b"".join(parts)


def retry_after_s(headers: httpx.Headers) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date (against the Date header)."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    when = _http_date(value)
    if when is None:
        return None
    return max(0.0, (when - _response_now(headers)).total_seconds())


def cache_hint_s(headers: httpx.Headers) -> float | None:
    """How long the server says the response stays fresh: Cache-Control max-age, else Expires."""
    directives: dict[str, str] = {}
    for part in headers.get("cache-control", "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            directives[name.lower()] = value.strip().strip('"')
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    max_age = directives.get("max-age", "")
    if max_age.isdigit():
        return float(max_age)
    expires = headers.get("expires")
    if expires is None:
        return None
    when = _http_date(expires)
    if when is None:
        return 0.0  # an invalid Expires means "already expired" (RFC 9111 §5.3)
    return max(0.0, (when - _response_now(headers)).total_seconds())


def _http_date(value: str) -> datetime | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" dates come back naive; HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return when


def _response_now(headers: httpx.Headers) -> datetime:
    """The server's idea of now (its Date header) so clock skew does not bend the delays."""
    date = _http_date(headers.get("date", ""))
    return date if date is not None else datetime.now(UTC)
