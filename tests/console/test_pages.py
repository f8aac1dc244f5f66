"""Pages rendered from agent API answers the test stack does not produce (high availability),
without a browser."""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path

import httpx
from starlette.requests import Request

from chromactl.config import Settings
from chromactl.gateway.console.admin import AdminPages
from chromactl.gateway.console.api import ApiError
from chromactl.gateway.console.app import Console, Visit
from chromactl.gateway.console.session import Session
from chromactl.gateway.principal import Grant, Principal, Role
from tests.gateway.helpers import run_chroma, run_gateway, write_secret

STANDBY_VIEW = {
    "pod": "chroma-1",
    "role": "standby",
    "holder": "chroma-0",
    "term": "3",
    "last_index": 120,
    "applied": 118,
    "lag_entries": 2,
    "lag_s": 0.4,
    "synchronous": False,
    "failovers": 1,
    "standbys": [],
    "primary": {
        "pod": "chroma-0",
        "role": "primary",
        "holder": "chroma-0",
        "term": "3",
        "last_index": 120,
        "applied": 120,
        "lag_entries": 0,
        "lag_s": 0.0,
        "synchronous": False,
        "failovers": 1,
        "standbys": [
            {
                "pod": "chroma-1",
                "applied": 118,
                "lag_entries": 2,
                "lag_s": 0.4,
                "seen_s_ago": 0.5,
                "in_sync": False,
            },
            {
                "pod": "chroma-2",
                "applied": 90,
                "lag_entries": 30,
                "lag_s": 6.0,
                "seen_s_ago": 1.0,
                "in_sync": False,
            },
        ],
    },
}


class FakeApi:
    def __init__(self, answers: dict[str, object]) -> None:
        self.answers = answers

    async def get(self, path: str, query: dict[str, str] | None = None) -> object:
        if path not in self.answers:
            raise ApiError(404, "NotFoundError", path)
        return self.answers[path]


def test_high_availability_lists_every_pod_with_its_role_and_lag() -> None:
    console = Console(Settings(), lambda: None)  # type: ignore[arg-type,return-value]
    api = FakeApi({"/chromactl/v1/ha/status": STANDBY_VIEW})
    admin = Principal("admin", "token", (Grant(Role.ADMIN),))
    visit = Visit(Session("token", "", "admin", 0), api, admin, {})  # type: ignore[arg-type]

    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    # In a thread of its own: Playwright's sync API keeps an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        page = pool.submit(asyncio.run, AdminPages(console).operations(request, visit)).result()
    html = page.body.decode()
    assert 'Lease holder: <strong class="holder">chroma-0</strong>' in html
    rows = [row.split("</tr>")[0] for row in html.split("<tr>")[1:] if row.startswith("<td>chroma-")]
    assert "chroma-0" in rows[0] and ">primary<" in rows[0]
    assert [">standby<" in r for r in rows] == [False, True, True]
    assert '<td class="num">30</td>' in html  # chroma-2's lag in entries
    assert "Not served here." in html  # no hold route answered


def test_under_a_path_prefix_the_pages_and_their_links_carry_it(tmp_path: Path) -> None:
    """``gateway.path_prefix``: the console answers under it and every link names it."""
    with run_chroma(tmp_path / "chroma") as chroma:
        token = write_secret(tmp_path, "token", "ck_prefix-admin")
        config = {
            "chroma": {"url": chroma.url},
            "gateway": {
                "path_prefix": "/chroma",
                "auth": {
                    "token": {"credentials": [{"name": "admin", "token_file": str(token), "role": "admin"}]}
                },
            },
        }
        with run_gateway(config) as gw, httpx.Client(base_url=gw.url) as browser:
            assert browser.get("/chroma/console/").headers["location"].startswith("/chroma/console/sign-in")
            signed = browser.post(
                "/chroma/console/sign-in", data={"method": "token", "token": "ck_prefix-admin"}
            )
            assert signed.status_code == 200 and 'url=/chroma/console/"' in signed.text
            home = browser.get("/chroma/console/")
            assert home.status_code == 200
            assert 'href="/chroma/console/t/default_tenant/d/default_database/"' in home.text
            assert 'href="/chroma/console/static/console.css"' in home.text
            assert browser.get("/chroma/console/static/console.css").status_code == 200
            assert browser.get("/chroma/console/t/default_tenant/d/default_database/").status_code == 200
