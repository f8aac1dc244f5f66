"""The console as a reviewer of an admin UI checks it: stored attacks stay text, the
Content-Security-Policy holds in the browser, headers, and no way to write."""

from __future__ import annotations

import httpx
from playwright.sync_api import BrowserContext, Dialog, expect

from chromactl.gateway.console.app import CONTENT_SECURITY_POLICY
from tests.console.conftest import ADMIN_TOKEN, XSS_DOCUMENT, XSS_URL, Stack, sign_in_with_token

XSS_PAGE = "/console/t/default_tenant/d/default_database/c/xss/"


def test_stored_script_and_javascript_urls_stay_text(stack: Stack, context: BrowserContext) -> None:
    page = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    sign_in_with_token(page, stack.url, ADMIN_TOKEN)
    page.goto(stack.url + XSS_PAGE)
    expect(page.locator("td.document").first).to_have_text(XSS_DOCUMENT)
    expect(page.locator("table.records")).to_contain_text(XSS_URL)
    assert page.title() != "pwned" and not dialogs
    # Nothing from the data became an element: no img, script or link but the page's own.
    assert page.locator("main img, main script").count() == 0
    hrefs = page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
    assert not [h for h in hrefs if h and h.lower().startswith("javascript:")]
    # The collection's own metadata (on the collections page) too.
    page.goto(stack.url + "/console/t/default_tenant/d/default_database/")
    expect(page.locator("table.collections tr", has_text="xss")).to_contain_text("<script>")
    assert page.title() != "pwned" and not dialogs


def test_the_policy_blocks_an_injected_inline_script(stack: Stack, context: BrowserContext) -> None:
    page = context.new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    sign_in_with_token(page, stack.url, ADMIN_TOKEN)
    page.evaluate(
        """() => { const s = document.createElement('script');
                   s.textContent = "window.injected = true; document.title = 'pwned'";
                   document.body.appendChild(s); }"""
    )
    page.wait_for_timeout(200)
    assert page.evaluate("() => window.injected === undefined")
    assert page.title() != "pwned"
    assert any("Content Security Policy" in m for m in messages), messages


def test_every_console_answer_has_the_security_headers(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, verify=str(stack.ca)) as client:
        for path in ("/console/sign-in", "/console/", "/console/static/console.css"):
            answer = client.get(path)
            headers = answer.headers
            assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
            assert headers["x-frame-options"] == "DENY"
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["cache-control"] == "no-store"
            assert headers["referrer-policy"] == "same-origin"
        assert client.get("/console/sign-in").headers["content-type"].startswith("text/html")


def test_the_console_has_no_way_to_write(stack: Stack) -> None:
    """Only sign-in and sign-out take a POST; other methods are not console routes at all."""
    with httpx.Client(base_url=stack.url, verify=str(stack.ca)) as client:
        signed = client.post("/console/sign-in", data={"method": "token", "token": ADMIN_TOKEN})
        assert signed.status_code == 200
        for path in (
            "/console/",
            "/console/t/default_tenant/d/default_database/c/big/",
            "/console/admin/audit",
        ):
            assert client.post(path).status_code == 405, path
        for method in ("PUT", "DELETE", "PATCH"):
            assert client.request(method, "/console/t/default_tenant/d/default_database/").status_code in (
                401,
                403,
            )
        # The session cookie is not a credential for the API.
        assert (
            client.get("/api/v2/tenants/default_tenant/databases/default_database/collections").status_code
            == 401
        )


def test_a_next_address_outside_the_console_is_not_followed(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, verify=str(stack.ca)) as client:
        for target in ("https://evil.example/", "//evil.example/console/", "/api/v2/reset"):
            answer = client.post(
                "/console/sign-in", data={"method": "token", "token": ADMIN_TOKEN, "next": target}
            )
            assert answer.status_code == 200
            assert 'content="0;url=/console/"' in answer.text, target


def test_a_tampered_or_foreign_session_cookie_is_refused(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, verify=str(stack.ca)) as client:
        client.post("/console/sign-in", data={"method": "token", "token": ADMIN_TOKEN})
        value = client.cookies["__Host-chromactl-console"]
        forged = value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB")
        client.cookies.set("__Host-chromactl-console", forged)
        answer = client.get("/console/")
        assert answer.status_code == 303 and "/console/sign-in" in answer.headers["location"]


def test_a_sign_in_sent_by_another_site_is_refused(stack: Stack) -> None:
    """Login CSRF: another site's page posting its own token must not sign the browser in."""
    form = {"method": "token", "token": ADMIN_TOKEN}
    with httpx.Client(base_url=stack.url, verify=str(stack.ca)) as client:
        for headers in (
            {"Origin": "https://evil.example"},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "cross-site", "Origin": stack.url},
        ):
            answer = client.post("/console/sign-in", data=form, headers=headers)
            assert answer.status_code == 403 and "another site" in answer.text
            assert not client.cookies
        same = client.post(
            "/console/sign-in", data=form, headers={"Origin": stack.url, "Sec-Fetch-Site": "same-origin"}
        )
        assert same.status_code == 200 and client.cookies


def test_odd_input_gets_a_page_that_says_what_to_change(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, verify=str(stack.ca)) as client:
        pasted = client.post("/console/sign-in", data={"method": "token", "token": ADMIN_TOKEN + "\u2019"})
        assert pasted.status_code == 400 and "printable ASCII" in pasted.text
        client.post("/console/sign-in", data={"method": "token", "token": ADMIN_TOKEN})
        deep = client.get(XSS_PAGE, params={"where": "[" * 5000})
        assert deep.status_code == 400 and "nested too deeply" in deep.text
        assert deep.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
