"""The member's pages in a real browser: headless Chromium (Debian's `chromium` package) driven
by Playwright. Subscribe link → tick consent → pay on the emulator's checkout page → back on
My auto-pay (active, masked card) → cancel with a confirmation → canceled. A screenshot of every
page goes to var/test-artifacts/pages/.

Skips, saying why, where there is no Chromium (`apt-get install chromium`; CI installs it)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from members.service import Principal
from payments.subscriptions.models import Subscription
from tests.conftest import ROOT
from tests.payments.pages.conftest import IssueLink
from vznos.container import Container

pytestmark = pytest.mark.e2e

ARTIFACTS = ROOT / "var" / "test-artifacts" / "pages"
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str | None:
    named = os.environ.get("VZNOS_CHROMIUM")
    if named:
        return named
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium on this machine: apt-get install -y chromium (CI does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            # Root in a container has no user namespaces for Chromium's sandbox.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=PHONE, locale="ru-RU")
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        context.close()


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def fits_the_phone(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_subscribe_pay_manage_and_cancel_in_a_browser(
    page: Any,
    container: Container,
    principal: Principal,
    member: str,
    issue_link: IssueLink,
) -> None:
    page.goto(issue_link())
    assert page.get_attribute("html", "lang") == "ru"
    assert fits_the_phone(page)
    shoot(page, "01-subscribe-ru")
    button = page.get_by_role("button", name="Перейти к оплате")
    subscribe_url = page.url
    button.click()  # no consent yet: the browser itself refuses to submit the form
    assert page.url == subscribe_url
    # Without the browser's check (an old browser), the server refuses and says which field.
    page.evaluate("document.getElementById('consent').removeAttribute('required')")
    with page.expect_navigation() as refused:
        button.click()
    assert refused.value is not None and refused.value.status == 400
    assert "«Согласие»" in page.get_by_role("alert").inner_text()
    assert page.evaluate("document.activeElement.id") == "consent"  # focus where it is needed
    shoot(page, "01b-subscribe-consent-missing")
    button = page.get_by_role("button", name="Перейти к оплате")
    page.get_by_label("Я прочитал(а) условия").check()
    assert page.evaluate("document.activeElement.id") == "consent"  # focus follows the label
    button.click()

    page.wait_for_url("**/checkout/**")
    shoot(page, "02-acquirer-checkout")
    page.get_by_label("Номер карты").fill("5555 5555 5555 4444")
    page.get_by_label("Месяц").fill("12")
    page.get_by_label("Год").fill("2030")
    page.get_by_label("Код CVC").fill("123")
    page.get_by_role("button", name="Оплатить").click()

    page.wait_for_url("**/my/autopay/**")
    assert page.locator("#status").get_attribute("data-status") == "active"
    assert "•••• 4444" in page.locator("#card").inner_text()
    assert "350,00" in page.locator("#next-charge").inner_text()
    assert fits_the_phone(page)
    shoot(page, "03-my-autopay-active")

    page.get_by_role("link", name="English").click()
    assert page.get_attribute("html", "lang") == "en"
    assert page.locator("#status").inner_text() == "On"
    shoot(page, "04-my-autopay-en")
    page.get_by_role("link", name="Русский").click()

    page.get_by_role("link", name="Отключить автоплатёж…").click()
    page.wait_for_url("**/cancel?**")
    shoot(page, "05-cancel-confirmation")
    page.get_by_role("button", name="Да, отключить").click()
    page.wait_for_url("**notice=canceled**")
    assert page.locator("#status").get_attribute("data-status") == "canceled"
    assert page.get_by_role("status").first.inner_text() == "Автоплатёж отключён."
    shoot(page, "06-my-autopay-canceled")

    with container.sessions() as session:
        [subscription_id] = session.scalars(select(Subscription.id)).all()
    after = container.subscriptions.get(principal, subscription_id)
    assert after.status == "canceled" and after.cancel_cause == "by_member"


def test_a_damaged_link_is_a_friendly_page_in_a_browser(
    page: Any, member: str, issue_link: IssueLink
) -> None:
    url = issue_link("manage")
    token = url.rsplit("/", 1)[1]
    damaged = url[: -len(token)] + token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    answer = page.goto(damaged)
    assert answer is not None and answer.status == 400
    assert page.get_by_role("heading", level=1).inner_text() == "Ссылка недействительна"
    shoot(page, "07-link-invalid")
