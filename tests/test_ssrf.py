"""SSRF with private feeds refused (production mode), on real loopback sockets, no network.

The fetcher's own client checks where it connects (``aggregator.fetch.GuardedBackend``): every
spelling of an internal address is refused before a socket opens, names are resolved once by a
resolver the test controls, and the connection goes to the address that was checked, so DNS
rebinding cannot reach an internal server. Two loopback servers share one port: the "outlet" on
127.0.0.1 (allowed by the test's address policy, as a public address would be) and an "internal"
service on 127.0.0.2, which must never see a request.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest

from aggregator.fetch import Fetcher, FetchResult, IPAddress, is_public_address, numeric_host
from aggregator.settings import Settings
from tests.feedserver import FeedServer, Response
from tests.livesite import free_port

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>outlet</title></channel></rss>'
OUTLET = ipaddress.ip_address("127.0.0.1")


def outlet_is_public(ip: IPAddress) -> bool:
    """The real policy, except that the test's outlet (127.0.0.1) stands for a public address."""
    return ip == OUTLET or is_public_address(ip)


class Resolver:
    """Answers from a script, one answer per call (the last one repeats), and counts the calls."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


def port_of(server: FeedServer) -> int:
    return int(server.httpd.server_address[1])


async def no_resolver(host: str, port: int) -> list[str]:
    raise AssertionError(f"resolver asked for {host}")


@pytest.fixture
def servers() -> Iterator[tuple[FeedServer, FeedServer]]:
    port = free_port()
    with FeedServer("127.0.0.1", port) as outlet, FeedServer("127.0.0.2", port) as internal:
        outlet.routes["/feed"] = Response(body=FEED, headers={"Content-Type": "application/rss+xml"})
        internal.routes["/feed"] = Response(body=b"<secret/>")
        yield outlet, internal


def fetch(urls: list[str], resolve: Any = no_resolver, is_public: Any = None) -> list[FetchResult]:
    cfg = Settings(allow_private_feeds=False, fetch_timeout_s=5)

    async def go() -> list[FetchResult]:
        async with Fetcher(cfg, resolve=resolve, is_public=is_public) as fetcher:
            return [await fetcher.fetch(url) for url in urls]

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("127.0.0.2", "127.0.0.2"),
        ("2130706434", "127.0.0.2"),  # decimal
        ("0177.2", "127.0.0.2"),  # octal
        ("0177.0.0.02", None),  # a dotted quad with leading zeros: httpx refuses the URL itself
        ("0x7f.0x0.0x0.0x2", "127.0.0.2"),  # hex
        ("0x7f000002", "127.0.0.2"),
        ("127.2", "127.0.0.2"),  # short: the last part fills the remaining bytes
        ("127.0.2", "127.0.0.2"),
        ("[::ffff:127.0.0.2]", "127.0.0.2"),  # IPv4-mapped
        ("[::ffff:7f00:2]", "127.0.0.2"),
        ("[64:ff9b::7f00:2]", "64:ff9b::7f00:2"),  # NAT64 of 127.0.0.2
        ("[2002:7f00:2::1]", "2002:7f00:2::1"),  # 6to4 of 127.0.0.2
        ("[::1]", "::1"),
    ],
)
def test_every_spelling_of_an_internal_address_is_refused_before_connecting(
    servers: tuple[FeedServer, FeedServer], host: str, shown: str | None
) -> None:
    outlet, internal = servers
    [result] = fetch([f"http://{host}:{port_of(internal)}/feed"], is_public=outlet_is_public)
    if shown is None:
        assert result.error is not None and result.error.startswith("invalid URL"), result.error
    else:
        assert result.error == f"refused private address {shown}"
    assert result.body is None
    assert internal.hits == {} and outlet.hits == {}


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.100.100.200",  # shared address space (a metadata service)
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::",
        "fe80::1",
        "fd00:ec2::254",  # IPv6 metadata (unique local)
        "ff02::1",
        "::ffff:169.254.169.254",
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
    ],
)
def test_internal_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "64:ff9b::5db8:d822"]
)
def test_public_addresses_are_public(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0x7F.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("0", "0.0.0.0"),
        ("[::ffff:7f00:1]", "::ffff:7f00:1"),
    ],
)
def test_numeric_hosts_are_read_as_the_c_library_reads_them(host: str, address: str) -> None:
    assert numeric_host(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    "host", ["feeds.example.com", "1.example", "0x7g.1", "abc", "1e1", "127.0.0.1.example"]
)
def test_names_are_not_numeric_hosts(host: str) -> None:
    assert numeric_host(host) is None


def test_a_name_resolving_to_an_internal_address_is_refused(servers: tuple[FeedServer, FeedServer]) -> None:
    outlet, internal = servers
    results = fetch(
        [
            f"http://metadata.test:{port_of(internal)}/feed",
            f"http://mapped.test:{port_of(internal)}/feed",
        ],
        # One internal address among allowed ones is enough; an IPv4-mapped answer is read through.
        resolve=Resolver(["127.0.0.1", "127.0.0.2"], ["::ffff:127.0.0.2"]),
        is_public=outlet_is_public,
    )
    assert [r.error for r in results] == ["refused private address 127.0.0.2"] * 2
    assert internal.hits == {} and outlet.hits == {}


def test_dns_rebinding_connects_to_the_address_that_was_checked(
    servers: tuple[FeedServer, FeedServer],
) -> None:
    """The attacker's DNS answers the outlet's address once, then the internal one (TTL 0): the
    fetch goes to the address checked; a later connection asks again and is refused."""
    outlet, internal = servers
    resolver = Resolver(["127.0.0.1"], ["127.0.0.2"])
    [first] = fetch(
        [f"http://rebind.test:{port_of(outlet)}/feed"], resolve=resolver, is_public=outlet_is_public
    )
    assert first.ok and first.body == FEED
    assert resolver.calls == ["rebind.test"]  # resolved once for the check and the connect
    [second] = fetch(
        [f"http://rebind.test:{port_of(outlet)}/feed"], resolve=resolver, is_public=outlet_is_public
    )
    assert second.error == "refused private address 127.0.0.2"
    assert outlet.hits == {"/feed": 1} and internal.hits == {}


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.2:{port}/feed",
        "http://2130706434:{port}/feed",
        "http://0177.2:{port}/feed",
        "http://[::ffff:127.0.0.2]:{port}/feed",
        "http://internal.test:{port}/feed",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_a_redirect_to_an_internal_address_is_refused(
    servers: tuple[FeedServer, FeedServer], location: str
) -> None:
    outlet, internal = servers
    outlet.routes["/moved"] = Response(
        status=302, headers={"Location": location.format(port=port_of(internal))}
    )
    resolver = Resolver(["127.0.0.1"]) if "internal.test" not in location else Resolver(["127.0.0.2"])

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host == "outlet.test" else await resolver(host, port)

    [result] = fetch(
        [f"http://outlet.test:{port_of(outlet)}/moved"], resolve=resolve, is_public=outlet_is_public
    )
    assert result.error is not None and result.error.startswith("refused private address"), result.error
    assert result.body is None
    assert outlet.hits == {"/moved": 1} and internal.hits == {}
