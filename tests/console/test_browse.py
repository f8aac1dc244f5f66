"""Browsing in the console: tenants, collections, a 10,000-record collection with filters,
similar records, and what a reader scoped to one tenant sees of another."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

from playwright.sync_api import Browser, BrowserContext, expect

from tests.console.conftest import ADMIN_TOKEN, BIG, READER_A_TOKEN, Stack, shot, sign_in_with_token

BIG_PAGE = "/console/t/default_tenant/d/default_database/c/big/"


def test_home_lists_every_tenant_and_database_for_an_admin(stack: Stack, context: BrowserContext) -> None:
    page = context.new_page()
    sign_in_with_token(page, stack.url, ADMIN_TOKEN)
    tenants = page.locator("section.tenant h2").all_inner_texts()
    assert set(tenants) == {"default_tenant", "tenant-a", "tenant-b"}
    expect(page.locator("section.tenant", has_text="tenant-a")).to_contain_text("main")
    shot(page, "home")


def test_collections_show_counts_dimension_and_metadata(stack: Stack, context: BrowserContext) -> None:
    page = context.new_page()
    sign_in_with_token(page, stack.url, ADMIN_TOKEN)
    page.click("text=default_database")
    row = page.locator("table.collections tr", has_text="big")
    expect(row.locator("td.num").first).to_have_text(str(BIG))
    expect(row.locator("td.num").nth(1)).to_have_text("16")
    expect(row).to_contain_text('"source": "console tests"')
    shot(page, "collections")


def test_browse_the_big_collection_with_a_filter_and_pages(stack: Stack, context: BrowserContext) -> None:
    page = context.new_page()
    sign_in_with_token(page, stack.url, ADMIN_TOKEN)
    page.goto(stack.url + BIG_PAGE)
    expect(page.locator("p.meta")).to_contain_text(f"{BIG} records")
    expect(page.locator("table.records tbody tr")).to_have_count(20)
    page.fill("input[name=where]", json.dumps({"$and": [{"topic": "science"}, {"n": {"$gte": 9000}}]}))
    page.fill("input[name=where_document]", json.dumps({"$contains": "record 99"}))
    page.click("form.filters button")
    rows = page.locator("table.records tbody tr")
    expect(rows.first).to_contain_text("science")
    ids = page.locator("table.records tbody td:first-child code").all_inner_texts()
    # record 99xx with n >= 9000 about science: 9902, 9906, ... (every 4th), 20 on page 1 of 25
    expected = [f"rec-{i:05d}" for i in range(9900, 10000) if i % 4 == 2]
    assert ids == expected[:20]
    for metadata in page.locator("table.records tbody td pre").all_inner_texts():
        assert json.loads(metadata)["topic"] == "science"
    expect(page.locator("code.embedding").first).to_contain_text("(16 in all)")
    shot(page, "records")
    page.click(".pager a:last-child")
    assert page.locator("table.records tbody td:first-child code").all_inner_texts() == expected[20:]
    expect(page.locator("input[name=where]")).to_have_value(
        json.dumps({"$and": [{"topic": "science"}, {"n": {"$gte": 9000}}]})
    )


def test_a_bad_filter_says_what_is_wrong(stack: Stack, context: BrowserContext) -> None:
    page = context.new_page()
    sign_in_with_token(page, stack.url, ADMIN_TOKEN)
    page.goto(stack.url + BIG_PAGE + "?where=" + quote("{not json"))
    expect(page.locator(".error")).to_contain_text("where is not JSON")
    page.goto(stack.url + BIG_PAGE + "?where=" + quote(json.dumps({"topic": {"$nope": 1}})))
    expect(page.locator(".error")).to_be_visible()
    expect(page.locator("p.meta")).to_contain_text(f"{BIG} records")


def test_similar_records_are_ordered_by_distance_from_the_chosen_one(
    stack: Stack, context: BrowserContext
) -> None:
    page = context.new_page()
    sign_in_with_token(page, stack.url, ADMIN_TOKEN)
    page.goto(stack.url + BIG_PAGE + "?ids=rec-00042")
    page.click("table.records >> text=Similar")
    page.wait_for_url(re.compile(r".*/similar\?id=rec-00042$"))
    expect(page.locator("section.record h2")).to_have_text("rec-00042")
    ids = page.locator("table.neighbours tbody td:nth-child(2) code").all_inner_texts()
    distances = [float(d) for d in page.locator("table.neighbours td.distance").all_inner_texts()]
    assert len(ids) == 10 and ids[0] == "rec-00042" and distances[0] < 1e-6
    assert distances == sorted(distances) and distances[-1] > 0
    shot(page, "similar")
    # Against Chroma directly: the same neighbours.
    with stack.api() as api:
        d = "/api/v2/tenants/default_tenant/databases/default_database/collections"
        col = api.get(f"{d}/big").json()
        emb = api.post(f"{d}/{col['id']}/get", json={"ids": ["rec-00042"], "include": ["embeddings"]}).json()
        direct = api.post(
            f"{d}/{col['id']}/query",
            json={"query_embeddings": emb["embeddings"], "n_results": 10, "include": ["distances"]},
        ).json()
    assert ids == direct["ids"][0]


def test_a_reader_of_tenant_a_sees_nothing_of_tenant_b(stack: Stack, context: BrowserContext) -> None:
    page = context.new_page()
    sign_in_with_token(page, stack.url, READER_A_TOKEN)
    assert page.locator("section.tenant h2").all_inner_texts() == ["tenant-a"]
    expect(page.locator("nav")).not_to_contain_text("Backups")
    page.click("text=main")
    expect(page.locator("table.collections")).to_contain_text("notes-a")
    for path in (
        "/console/t/tenant-b/d/main/",
        "/console/t/tenant-b/d/main/c/notes-b/",
        "/console/t/tenant-b/d/main/c/notes-b/similar?id=tenant-b-1",
        "/console/t/default_tenant/d/default_database/c/big/",
        "/console/admin/backups",
        "/console/admin/audit",
    ):
        answer = page.goto(stack.url + path)
        assert answer is not None and answer.status == 403, path
        expect(page.locator(".error")).to_contain_text("Not allowed")
        assert "tenant-b secret" not in page.content()


def test_pages_fit_a_phone_width(stack: Stack, browser: Browser) -> None:
    """At 390 px nothing makes the page scroll sideways: wide tables scroll in their own box."""
    phone = browser.new_context(
        ignore_https_errors=True, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    try:
        page = phone.new_page()
        sign_in_with_token(page, stack.url, ADMIN_TOKEN)
        for path in ("/console/", BIG_PAGE, BIG_PAGE + "similar?id=rec-00007", "/console/admin/audit"):
            page.goto(stack.url + path)
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, path
            expect(page.locator("header .who button")).to_be_visible()
        page.goto(stack.url + BIG_PAGE)
        shot(page, "records-phone")
    finally:
        phone.close()
