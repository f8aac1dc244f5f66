"""The console's admin pages: backups after a snapshot and a restore drill, operations
(limits, holds, high availability), the audit log; and the console's own requests in the
audit log and the metrics."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
from playwright.sync_api import BrowserContext, expect

from tests.console.conftest import (
    ADMIN_TOKEN,
    CHROMACTL,
    LIMITED_TOKEN,
    READER_A_TOKEN,
    Stack,
    shot,
    sign_in_with_token,
)
from tests.gateway.helpers import wait_until


def _snapshot(stack: Stack) -> str:
    with stack.api() as api:
        started = api.post("/chromactl/v1/backups", json={})
        assert started.status_code == 202, started.text
        backup_id = started.json()["backup_id"]

        def done() -> bool:
            return bool(api.get(f"/chromactl/v1/backups/{backup_id}").json()["state"] != "running")

        wait_until(done, 120, "the backup")
        status = api.get(f"/chromactl/v1/backups/{backup_id}").json()
    assert status["state"] == "succeeded", status
    return str(status["result"]["snapshot_id"])


def test_backups_page_after_a_snapshot_and_a_drill(stack: Stack, context: BrowserContext) -> None:
    snapshot_id = _snapshot(stack)
    token_file = stack.work / "secrets" / "admin"
    drill = subprocess.run(
        [
            CHROMACTL,
            "backup",
            "drill",
            "--repo",
            str(stack.backup_target),
            "--snapshot",
            snapshot_id,
            "--sample",
            "5",
            "--report-to",
            stack.url,
            "--token-file",
            str(token_file),
            "--ca-file",
            str(stack.ca),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert drill.returncode == 0, drill.stderr[-2000:]
    assert json.loads(drill.stdout)["outcome"] == "success"
    page = context.new_page()
    sign_in_with_token(page, stack.url, ADMIN_TOKEN)
    page.click("nav >> text=Backups")
    snapshots = page.locator("table.snapshots")
    expect(snapshots).to_contain_text(snapshot_id)
    row = snapshots.locator("tr", has_text=snapshot_id)
    expect(row.locator("td.num").nth(4)).to_have_text("4")  # collections: big, xss, notes-a, notes-b
    expect(page.locator("table.drills tr", has_text=snapshot_id)).to_contain_text("success")
    expect(page.locator("table.runs")).to_contain_text("succeeded")
    copy = page.locator("table.copies tr", has_text="backups-offsite").first
    expect(copy).to_contain_text("success")
    # Continuous backup: restorable from the first snapshot's cut on, and the journal's lag.
    wait_until(lambda: _restorable(page, stack), 60, "a restorable range")
    expect(page.locator("strong.lag")).to_contain_text(" s")
    shot(page, "backups")


def _restorable(page: object, stack: Stack) -> bool:
    page.goto(stack.url + "/console/admin/backups")  # type: ignore[attr-defined]
    return page.locator("ul.ranges li").count() > 0  # type: ignore[attr-defined,no-any-return]


def test_operations_page_shows_limits_holds_and_refusals(stack: Stack, context: BrowserContext) -> None:
    # The console's reads count against the credential: a page past its rate gets the 429.
    limited = context.browser.new_context(ignore_https_errors=True)  # type: ignore[union-attr]
    page = limited.new_page()
    sign_in_with_token(page, stack.url, LIMITED_TOKEN)
    for _ in range(3):
        answer = page.goto(stack.url + "/console/t/default_tenant/d/default_database/")
        if answer is not None and answer.status == 429:
            break
    assert answer is not None and answer.status == 429
    expect(page.locator(".error")).to_contain_text("rate limit")
    # The next page's own check of the session is over the rate too: a page, not a 500.
    answer = page.goto(stack.url + "/console/")
    assert answer is not None and answer.status == 429
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    expect(page.locator(".error")).to_contain_text("rate limit")
    limited.close()
    with stack.api() as api:
        hold = api.post("/chromactl/v1/hold", json={"timeout_s": 60}).json()
        try:
            page = context.new_page()
            sign_in_with_token(page, stack.url, ADMIN_TOKEN)
            page.click("nav >> text=Operations")
            expect(page.locator("ul.holds")).to_contain_text(hold["hold_id"])
            expect(page.locator("table.rules tr", has_text="tenant-a")).to_contain_text("max_collections 20")
            expect(page.locator("table.rules tr", has_text="tenant-a").locator("td.num")).to_have_text("1")
            expect(page.locator("table.rules")).to_contain_text("requests_per_second 500")
            expect(page.locator("section", has_text="High availability")).to_contain_text("off here")
            refusal = page.locator("table.refusals tr", has_text="limited")
            expect(refusal).to_contain_text("requests_per_second")
            shot(page, "operations")
        finally:
            api.delete(f"/chromactl/v1/hold/{hold['hold_id']}")


def test_audit_page_shows_the_console_reads_and_filters_them(stack: Stack, context: BrowserContext) -> None:
    reader = context.new_page()
    sign_in_with_token(reader, stack.url, READER_A_TOKEN)
    reader.goto(stack.url + "/console/t/tenant-b/d/main/")  # refused: audited as denied
    admin = context.browser.new_context(ignore_https_errors=True)  # type: ignore[union-attr]
    page = admin.new_page()
    sign_in_with_token(page, stack.url, ADMIN_TOKEN)
    page.click("nav >> text=Audit log")
    page.fill("input[name=principal]", "reader-a")
    page.select_option("select[name=outcome]", "denied")
    page.click("form.filters button")
    rows = page.locator("table.audit tbody tr")
    expect(rows.first).to_contain_text("reader-a")
    expect(rows.first).to_contain_text("list_collections")
    expect(rows.first).to_contain_text("tenant-b")
    expect(rows.first).to_contain_text("console")
    for text in rows.all_inner_texts():
        assert "reader-a" in text and "denied" in text
    shot(page, "audit")
    admin.close()
    lines = [json.loads(line) for line in stack.audit_file.read_text().splitlines()]
    assert any(
        line.get("via") == "console"
        and line["principal"]["name"] == "reader-a"
        and line["tenant"] == "tenant-b"
        and line["outcome"] == "denied"
        for line in lines
    )


def test_console_pages_and_their_reads_are_counted(stack: Stack, context: BrowserContext) -> None:
    metrics_port = json.loads(stack.config.read_text())["gateway"]["metrics_port"]

    def count(operation: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        total = 0.0
        for line in text.splitlines():
            if line.startswith("chromactl_gateway_requests_total{") and f'operation="{operation}"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    pages, gets = count("console"), count("collection_get")
    page = context.new_page()
    sign_in_with_token(page, stack.url, ADMIN_TOKEN)
    page.goto(stack.url + "/console/t/default_tenant/d/default_database/c/big/")
    time.sleep(0.2)
    assert count("console") >= pages + 3  # the sign-in page, the sign-in, home, the records page
    assert count("collection_get") == gets + 1
