"""Signing in to the console with each credential the API takes, and out again."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, expect

from tests.console.conftest import (
    ADMIN_TOKEN,
    BASIC_PASSWORD,
    BASIC_USER,
    CERT_NAME,
    READER_A_TOKEN,
    Stack,
    shot,
    sign_in_with_token,
)


def _session_cookie(context: BrowserContext) -> dict[str, object]:
    found = [c for c in context.cookies() if "chromactl-console" in c["name"] and "oidc" not in c["name"]]
    assert len(found) == 1, found
    return dict(found[0])


def test_a_page_before_signing_in_leads_to_the_sign_in_page(stack: Stack, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(stack.url + "/console/t/default_tenant/d/default_database/")
    assert urlsplit(page.url).path == "/console/sign-in"
    expect(page.locator("h1")).to_have_text("Sign in")
    for heading in ("Token", "User and password", "Single sign-on", "Client certificate"):
        expect(page.locator("h2", has_text=heading)).to_be_visible()
    shot(page, "sign-in")


def test_token_sign_in_returns_to_the_page_asked_for(stack: Stack, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(stack.url + "/console/t/default_tenant/d/default_database/")
    page.fill("input[name=token]", ADMIN_TOKEN)
    page.click("text=Sign in with the token")
    page.wait_for_url(stack.url + "/console/t/default_tenant/d/default_database/")
    expect(page.locator("table.collections")).to_contain_text("big")
    cookie = _session_cookie(context)
    assert cookie["name"] == "__Host-chromactl-console"
    assert (
        cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    )
    assert ADMIN_TOKEN not in str(cookie["value"])  # sealed, not merely encoded
    assert page.evaluate("() => [localStorage.length, sessionStorage.length]") == [0, 0]


def test_a_wrong_token_is_refused_and_no_session_is_made(stack: Stack, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(stack.url + "/console/sign-in")
    page.fill("input[name=token]", "ck_not-a-token")
    with page.expect_response(lambda r: r.url.endswith("/console/sign-in")) as answer:
        page.click("text=Sign in with the token")
    assert answer.value.status == 401
    expect(page.locator(".error")).to_contain_text("not signed in")
    assert not [c for c in context.cookies() if "chromactl-console" in c["name"]]


def test_basic_user_signs_in(stack: Stack, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(stack.url + "/console/sign-in")
    page.fill("input[name=username]", BASIC_USER)
    page.fill("input[name=password]", BASIC_PASSWORD)
    page.click("form:has(input[name=username]) button")
    page.wait_for_url(stack.url + "/console/")
    expect(page.locator("header .who")).to_contain_text(BASIC_USER)
    expect(page.locator("section.tenant h2", has_text="default_tenant")).to_be_visible()


def _oidc_sign_in(
    stack: Stack, context: BrowserContext, user: str, start: str = "/console/sign-in"
) -> object:
    page = context.new_page()
    page.goto(stack.url + start)
    page.click("text=Sign in with OpenID Connect")
    # The provider's own login page (oidc-provider's), then its consent page.
    page.wait_for_url(stack.issuer + "/interaction/**")
    page.fill("input[name=login]", user)
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")
    page.wait_for_url(stack.issuer + "/interaction/**")
    page.click("button[type=submit]")
    # The callback's page moves on by itself to the page the sign-in started from.
    page.wait_for_url(lambda url: url.startswith(stack.url + "/console/") and "/oidc/" not in url)
    return page


def test_oidc_user_signs_in_through_the_provider_with_pkce(stack: Stack, context: BrowserContext) -> None:
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    page = _oidc_sign_in(stack, context, "alice")
    expect(page.locator("header .who")).to_contain_text("alice")  # type: ignore[attr-defined]
    expect(page.locator("nav")).to_contain_text("Backups")  # type: ignore[attr-defined]
    authorize = next(u for u in requests if u.startswith(stack.issuer + "/auth?"))
    assert "code_challenge_method=S256" in authorize and "code_challenge=" in authorize
    assert not [c for c in context.cookies() if c["name"].endswith("chromactl-console-oidc")]


def test_an_oidc_reader_gets_only_its_tenant_and_the_page_it_asked_for(
    stack: Stack, context: BrowserContext
) -> None:
    page = _oidc_sign_in(stack, context, "bob", start="/console/t/tenant-b/d/main/")
    assert urlsplit(page.url).path == "/console/t/tenant-b/d/main/"  # type: ignore[attr-defined]
    expect(page.locator("table.collections")).to_contain_text("notes-b")  # type: ignore[attr-defined]
    page.goto(stack.url + "/console/")  # type: ignore[attr-defined]
    tenants = page.locator("section.tenant h2").all_inner_texts()  # type: ignore[attr-defined]
    assert tenants == ["tenant-b"]
    expect(page.locator("nav")).not_to_contain_text("Backups")  # type: ignore[attr-defined]


def test_client_certificate_signs_in(stack: Stack, browser: Browser) -> None:
    context = browser.new_context(
        ignore_https_errors=True,
        client_certificates=[
            {"origin": stack.url, "certPath": str(stack.client_cert), "keyPath": str(stack.client_key)}
        ],
    )
    try:
        page = context.new_page()
        page.goto(stack.url + "/console/sign-in")
        expect(page.locator("form:has(input[value=certificate])")).to_contain_text(CERT_NAME)
        page.click("text=Sign in with the certificate")
        page.wait_for_url(stack.url + "/console/")
        expect(page.locator("header .who")).to_contain_text(CERT_NAME)
        expect(page.locator("nav")).to_contain_text("Audit log")
    finally:
        context.close()


def test_without_a_certificate_there_is_no_certificate_sign_in(stack: Stack, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(stack.url + "/console/sign-in")
    expect(page.locator("form:has(input[value=certificate])")).to_contain_text("presented no certificate")


def test_sign_out_ends_the_session(stack: Stack, context: BrowserContext) -> None:
    page = context.new_page()
    sign_in_with_token(page, stack.url, READER_A_TOKEN)
    page.click("text=Sign out")
    page.wait_for_url("**/console/sign-in?**")
    assert not [c for c in context.cookies() if "chromactl-console" in c["name"]]
    page.goto(stack.url + "/console/")
    assert urlsplit(page.url).path == "/console/sign-in"
