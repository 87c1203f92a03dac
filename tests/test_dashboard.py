"""The dashboard: sessions, CSRF and rate limits over HTTP (SQLite and PostgreSQL), then the
editor's whole job in headless Chromium (Playwright, Debian's /usr/bin/chromium), with a hostile
feed as an XSS probe. Screenshots of every page at 1280 and 390 px go to tests/artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from aggregator.db import make_engine
from aggregator.migrate import upgrade
from aggregator.registry import add_sources
from aggregator.settings import Settings
from api.dashboard.session import COOKIE, LOGIN_COOKIE
from sources.opml import SourceSpec
from tests.feedserver import FeedServer, Response
from tests.livesite import serving
from tests.newsroom import FIXTURES, LUMEN_EN, LUMEN_PT, Newsroom, open_newsroom

SHOTS = Path(__file__).parent / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture
def room(engine: sa.Engine, settings: Settings) -> Iterator[Newsroom]:
    with FeedServer() as server:
        yield open_newsroom(engine, settings, server)


def login(client: Any, key: str) -> str:
    page = client.get("/dashboard/login")
    assert page.status_code == 200
    token = client.cookies.get(LOGIN_COOKIE)
    assert token and f'value="{token}"' in page.text
    r = client.post("/dashboard/login", data={"csrf": token, "key": key}, follow_redirects=False)
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # plain http here; Secure behind TLS
    stories = client.get("/dashboard/stories")
    found = re.search(r'name="csrf" value="([^"]+)"', stories.text)
    assert found
    return found.group(1)


def test_sessions_csrf_roles_and_rate_limit(room: Newsroom) -> None:
    with room.client() as client:
        assert (
            client.get("/dashboard/stories", follow_redirects=False).headers["location"] == "/dashboard/login"
        )
        page = client.get("/dashboard/login")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
        assert "<script>" not in page.text
        csrf = login(client, room.keys["reader"])
        story = room.story_of(LUMEN_EN)
        # a reader sees the pages but may not act, and the forms are not offered
        assert "Harbor Exchange" in client.get("/dashboard/stories").text
        assert 'action="/dashboard/actions/split"' not in client.get("/dashboard/stories").text
        r = client.post("/dashboard/actions/hide", data={"csrf": csrf, "story": story})
        assert r.status_code == 403
        client.cookies.clear()
        csrf = login(client, room.keys["editor"])
        # no token, a wrong token: refused, nothing done
        assert client.post("/dashboard/actions/hide", data={"story": story}).status_code == 403
        assert (
            client.post("/dashboard/actions/hide", data={"story": story, "csrf": "x" * 32}).status_code == 403
        )
        assert client.get(f"/v1/stories/{story}").status_code == 200
        r = client.post(
            "/dashboard/actions/hide",
            data={"story": story},
            headers={"X-CSRF-Token": csrf},
            follow_redirects=False,
        )
        assert r.status_code == 303 and "Hidden" in r.headers["location"]
        assert client.get(f"/v1/stories/{story}").status_code == 404
        r = client.post(
            "/dashboard/actions/merge",
            data={"csrf": csrf, "story": story, "other": "abc"},
            follow_redirects=True,
        )
        assert "a positive number is required" in r.text
        assert (
            client.post("/dashboard/actions/source-poll", data={"csrf": csrf, "source": 1}).status_code == 403
        )
        # a forged or tampered session is no session
        good = client.cookies.get(COOKIE)
        assert good
        client.cookies.set(COOKIE, good[:-2] + ("00" if not good.endswith("00") else "11"), path="/dashboard")
        assert client.get("/dashboard/stories", follow_redirects=False).status_code == 303
        # revoking the key ends its sessions at once
        client.cookies.set(COOKIE, good, path="/dashboard")
        assert client.get("/dashboard/stories", follow_redirects=False).status_code == 200
        with room.client() as other:
            assert other.delete("/v1/admin/keys/2", headers=room.auth("admin")).status_code == 200
        assert client.get("/dashboard/stories", follow_redirects=False).status_code == 303
        # logout needs the token too
        client.cookies.clear()
        csrf = login(client, room.keys["admin"])
        assert client.post("/dashboard/logout", data={}).status_code == 403
        r = client.post("/dashboard/logout", data={"csrf": csrf}, follow_redirects=False)
        assert r.status_code == 303 and f"{COOKIE}=" in r.headers["set-cookie"]
        client.cookies.clear()
        assert client.get("/dashboard/stories", follow_redirects=False).status_code == 303
        # login attempts are limited per client
        client.get("/dashboard/login")
        token = client.cookies.get(LOGIN_COOKIE)
        codes = [
            client.post("/dashboard/login", data={"csrf": token, "key": "bw_wrong"}).status_code
            for _ in range(6)
        ]
        assert codes == [401] * 5 + [429]
        # a blocked client is refused even with a good key
        r = client.post("/dashboard/login", data={"csrf": token, "key": room.keys["admin"]})
        assert r.status_code == 429


# ---- in the browser ----------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Newsroom, str]]:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/dash.sqlite", allow_private_feeds=True)
    engine = make_engine(settings)
    upgrade(engine)
    with FeedServer() as server:
        room = open_newsroom(engine, settings, server)
        server.routes["/hostile/en.xml"] = Response(
            body=(FIXTURES / "hostile-en.xml").read_bytes(), headers={"Content-Type": "application/rss+xml"}
        )
        add_sources(
            engine, [SourceSpec(url=server.url("/hostile/en.xml"), outlet="hostile", locale="en", title=None)]
        )
        room.poll()
        from api.app import create_app

        with serving(create_app(settings, engine)) as base:
            yield room, base
    engine.dispose()


def _dismiss(dialog: Any, seen: list[str]) -> None:
    seen.append(dialog.message)
    dialog.dismiss()


@pytest.mark.browser
def test_editor_does_the_job_in_chromium(site: tuple[Newsroom, str]) -> None:
    from playwright.sync_api import sync_playwright

    room, base = site
    SHOTS.mkdir(parents=True, exist_ok=True)
    dialogs: list[str] = []
    attacker: list[str] = []
    console: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda d: _dismiss(d, dialogs))
            page.on(
                "request",
                lambda r: (
                    attacker.append(r.url) if "attacker" in r.url or r.url.startswith("javascript") else None
                ),
            )
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)

            def shoot(name: str) -> None:
                for width in (1280, 390):
                    page.set_viewport_size({"width": width, "height": 900})
                    page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
                page.set_viewport_size({"width": 1280, "height": 900})

            page.goto(f"{base}/dashboard")
            assert page.url.endswith("/dashboard/login")
            shoot("login")
            page.fill("#key", "bw_not-a-key")
            page.click("button[type=submit]")
            assert "Unknown or revoked key" in page.content()
            page.fill("#key", room.keys["editor"])
            page.click("button[type=submit]")
            page.wait_for_url("**/dashboard/stories")
            lumen = room.story_of(LUMEN_EN)
            card = page.locator(f"#story-{lumen}")
            assert card.locator("tr.member").count() == 4
            assert "original" in card.locator("tr.original").inner_text()
            assert "score" in card.inner_text() and "threshold" in card.inner_text()
            shoot("stories")

            # split the pt-PT member: it becomes its own story, in the page and in /v1/feed
            card.locator("tr.member", has_text="lista o token").locator("button.split").click()
            page.wait_for_selector(".flash.ok")
            alone = room.story_of(LUMEN_PT)
            assert alone != lumen and f"Split into story {alone}" in page.locator(".flash.ok").inner_text()
            assert page.locator(f"#story-{alone} tr.member").count() == 1
            assert page.locator(f"#story-{lumen} tr.member").count() == 3
            feed = page.request.get(f"{base}/v1/feed?locale=pt-PT").json()
            assert alone in [e["id"] for e in feed["items"]]

            # merge it back from the Lumen story's form
            merge = page.locator(f"#story-{lumen} form[action='/dashboard/actions/merge']")
            merge.locator("input[name=other]").fill(str(alone))
            merge.locator("button").click()
            page.wait_for_function(f"document.querySelectorAll('#story-{lumen} tr.member').length === 4")
            assert page.locator(f"#story-{alone}").count() == 0
            feed = page.request.get(f"{base}/v1/feed?locale=pt-PT").json()
            assert alone not in [e["id"] for e in feed["items"]]

            # confirm the first entry of the review queue
            page.click("nav >> text=Review")
            page.wait_for_url("**/dashboard/review")
            shoot("review")
            first = page.locator("tr.entry").first
            key = first.get_attribute("data-key")
            first.locator("button.confirm").click()
            page.wait_for_selector(".flash.ok")
            assert page.locator(f"tr.entry[data-key='{key}']").count() == 0

            # the audit log has all three, by this key's name
            page.click("nav >> text=Audit log")
            page.wait_for_url("**/dashboard/audit")
            rows = page.locator("tr.audit-entry").all_inner_texts()
            assert [r.split("\t")[2] for r in rows[:3]] == ["review.confirm", "story.merge", "story.split"]
            assert all("editor-alice" in r for r in rows[:3])
            shoot("audit")

            page.click("nav >> text=Sources")
            page.wait_for_url("**/dashboard/sources")
            assert page.locator("tr.source").count() == 5 and page.locator("svg.spark").count() == 5
            shoot("sources")
            page.click("nav >> text=Disclaimers")
            page.wait_for_url("**/dashboard/disclaimers")
            assert page.locator("p.preview[lang=ar]").first.get_attribute("dir") == "rtl"
            shoot("disclaimers")

            # keyboard: the skip link is the first stop, and the nav follows
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.textContent") == "Skip to content"

            page.click("button:has-text('Log out')")
            page.wait_for_url("**/dashboard/login")
            page.goto(f"{base}/dashboard/stories")
            assert page.url.endswith("/dashboard/login")
        finally:
            browser.close()
    assert dialogs == [] and attacker == []
    assert not [c for c in console if "Content Security Policy" in c], console


@pytest.mark.browser
def test_hostile_feed_html_stays_inert(site: tuple[Newsroom, str]) -> None:
    from playwright.sync_api import sync_playwright

    room, base = site
    SHOTS.mkdir(parents=True, exist_ok=True)
    dialogs: list[str] = []
    attacker: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda d: _dismiss(d, dialogs))
            page.on("request", lambda r: attacker.append(r.url) if "attacker" in r.url else None)
            page.goto(f"{base}/dashboard/login")
            page.fill("#key", room.keys["admin"])
            page.click("button[type=submit]")
            page.wait_for_url("**/dashboard/stories")
            html = page.content()
            assert "Probe one" in html and "Probe two" in html
            for path in ("review", "sources", "audit", "disclaimers", "stories"):
                page.goto(f"{base}/dashboard/{path}")
                page.wait_for_load_state("networkidle")
            # nothing from the feed became markup: no script, iframe or svg outside our sparklines,
            # no javascript: link, no handler attributes
            assert page.locator("main script, main iframe, article svg").count() == 0
            hrefs = page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href') || '')")
            assert not [h for h in hrefs if h.strip().lower().startswith(("javascript", "data"))]
            handlers = page.evaluate(
                "[...document.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name)).filter(n => n.startsWith('on'))"
            )
            assert handlers == []
            # the right-to-left override cannot reorder the text around the title
            probe = page.locator("bdi", has_text="Probe two").first
            assert probe.count() == 1
            page.wait_for_timeout(300)
            page.screenshot(path=str(SHOTS / "xss-probe-1280.png"), full_page=True)
        finally:
            browser.close()
    assert dialogs == [] and attacker == []


def test_every_page_renders_every_kind_of_queue_entry(room: Newsroom) -> None:
    from sqlmodel import Session, select

    from aggregator.models import Item, MergeDecision
    from tests.newsroom import FOUNDATION_ES

    with Session(room.engine) as s:
        item = s.exec(select(Item).where(Item.link == FOUNDATION_ES)).one()
        lumen = s.exec(select(Item).where(Item.link == LUMEN_EN)).one()
        decision = s.exec(select(MergeDecision).where(MergeDecision.item_id == item.id)).one()
        decision.signals = {"nearest": {"item": lumen.id, "score": 0.7, "threshold": 0.72}}
        s.add(decision)
        s.commit()
    with room.client() as client:
        login(client, room.keys["admin"])
        review = client.get("/dashboard/review")
        assert review.status_code == 200
        assert {"merge", "new", "related"} <= set(
            re.findall(r"<tr class=\"entry\" data-key=\"[^\"]+\">\s*<td>(\w+)</td>", review.text)
        )
        for path in ("stories", "stories/stream", "sources", "disclaimers", "audit", "audit?before=999"):
            r = client.get(f"/dashboard/{path}")
            assert r.status_code == 200 and r.headers["content-security-policy"], path
        assert client.get("/dashboard/sources.opml").content.startswith(b"<?xml")
