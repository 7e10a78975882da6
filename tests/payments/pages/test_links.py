"""Signed links: the CRM's API issues them; an expired, damaged or misused link is a friendly
page in the member's language, never a stack trace; a form needs its page's token."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
from sqlalchemy import func, select

from core.clock import ManualClock
from members.models import MemberConsent
from payments.subscriptions.models import Subscription
from tests.conftest import START
from tests.payments.pages.conftest import IssueLink
from vznos.container import Container


def csrf_of(html: str, form: str = "subscribe") -> str:
    """The token of one form on a page (forms are marked with `data-form`)."""
    match = re.search(
        r'<form[^>]*data-form="'
        + form
        + r'"[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)"',
        html,
    )
    assert match, f"the page has no {form} form"
    return match.group(1)


def count(container: Container, model: type[object]) -> int:
    with container.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_the_link_api_answers_a_url_and_when_it_expires(client: httpx.Client, member: str) -> None:
    answer = client.post("/v1/members/m-1/links", json={"purpose": "manage", "expires_in_hours": 2})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["url"].startswith(str(client.base_url) + "/my/autopay/")
    assert body["purpose"] == "manage"
    assert body["expires_at"].startswith((START + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))


def test_a_subscribe_link_needs_an_amount_unless_the_dues_plan_gives_one(
    client: httpx.Client, member: str
) -> None:
    refused = client.post("/v1/members/m-1/links", json={"purpose": "subscribe"})
    assert refused.status_code == 422
    assert refused.json()["field"] == "amount"

    assert client.put(
        "/v1/dues-plans/flat-412",
        json={
            "organization_code": "ppo-1",
            "name": "Фиксированный",
            "kind": "fixed",
            "amount": {"value": "412.00", "currency": "RUB"},
        },
    ).status_code in (200, 201)
    assert client.put(
        "/v1/members/m-1/dues-plan", json={"plan_code": "flat-412", "effective_from": "2026-01"}
    ).status_code in (200, 201)
    planned = client.post("/v1/members/m-1/links", json={"purpose": "subscribe"})
    assert planned.status_code == 201, planned.text
    assert planned.json()["amount"] == {"value": "412.00", "currency": "RUB"}
    assert "412,00" in httpx.get(planned.json()["url"]).text


def test_bad_link_requests_are_refused_naming_the_field(client: httpx.Client, member: str) -> None:
    for body, field in (
        ({"purpose": "unsubscribe"}, "purpose"),
        ({"purpose": "manage", "expires_in_hours": 0}, "expires_in_hours"),
        ({"purpose": "manage", "expires_in_hours": 721}, "expires_in_hours"),
    ):
        answer = client.post("/v1/members/m-1/links", json=body)
        assert answer.status_code == 422, body
        assert answer.json()["field"] == field
    assert client.post("/v1/members/nobody/links", json={"purpose": "manage"}).status_code == 404


def test_the_subscribe_page_is_russian_first_with_an_english_switch(
    issue_link: IssueLink, member: str
) -> None:
    url = issue_link()
    ru = httpx.get(url)
    assert ru.status_code == 200
    assert ru.headers["content-type"].startswith("text/html")
    assert '<html lang="ru">' in ru.text
    assert 'name="viewport"' in ru.text
    assert "350,00\xa0₽" in ru.text
    assert 'for="consent"' in ru.text and 'id="consent"' in ru.text
    assert "ежемесячно, 23-го числа" in ru.text  # the regularity: START is the 23rd
    assert "отключить автоплатёж в любой момент" in ru.text  # how to cancel
    assert "?lang=en" in ru.text
    en = httpx.get(url, params={"lang": "en"})
    assert '<html lang="en">' in en.text
    assert "350.00\xa0RUB" in en.text
    assert "every month on day 23" in en.text


def test_an_expired_link_is_a_friendly_page_in_both_languages(
    issue_link: IssueLink, member: str, clock: ManualClock
) -> None:
    url = issue_link("manage", expires_in_hours=1)
    assert httpx.get(url).status_code == 200
    clock.advance(timedelta(hours=1, seconds=1))
    ru = httpx.get(url)
    assert ru.status_code == 410
    assert ru.headers["content-type"].startswith("text/html")
    assert "Срок действия ссылки истёк" in ru.text
    assert '<section lang="en"' in ru.text and "This link has expired" in ru.text
    assert "Traceback" not in ru.text
    en = httpx.get(url, params={"lang": "en"})
    assert en.status_code == 410
    assert "This link has expired" in en.text


def test_a_damaged_or_misused_link_is_a_friendly_page(issue_link: IssueLink, member: str) -> None:
    manage = issue_link("manage")
    token = manage.rsplit("/", 1)[1]
    # A character inside the payload (the last one of a base64 part may carry only padding).
    flipped = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    base = manage.rsplit("/my/", 1)[0]
    subscribe_token = issue_link().rsplit("/", 1)[1]
    for url in (
        f"{base}/my/autopay/{flipped}",
        f"{base}/my/autopay/not-a-link",
        f"{base}/my/autopay/{subscribe_token}",  # a subscribe link cannot manage
        f"{base}/my/subscribe/{token}",  # and a manage link cannot subscribe
    ):
        page = httpx.get(url)
        assert page.status_code == 400, url
        assert page.headers["content-type"].startswith("text/html")
        assert "Ссылка недействительна" in page.text
        assert "Traceback" not in page.text
    assert (
        "This link is not valid"
        in httpx.get(f"{base}/my/autopay/{flipped}", params={"lang": "en"}).text
    )


def test_subscribing_without_the_consent_box_is_refused_and_changes_nothing(
    container: Container, issue_link: IssueLink, member: str
) -> None:
    url = issue_link()
    csrf = csrf_of(httpx.get(url).text)
    refused = httpx.post(url, data={"csrf": csrf, "lang": "ru"})
    assert refused.status_code == 400
    assert "«Согласие»" in refused.text  # names the field
    assert 'aria-invalid="true"' in refused.text
    english = httpx.post(url, data={"csrf": csrf, "lang": "en", "consent": "no"})
    assert english.status_code == 400
    assert "“Consent” field" in english.text
    assert count(container, Subscription) == 0
    assert count(container, MemberConsent) == 0


def test_a_form_without_its_page_token_is_refused(
    container: Container, issue_link: IssueLink, member: str
) -> None:
    url = issue_link()
    other = issue_link()
    for data in (
        {"consent": "yes"},
        {"consent": "yes", "csrf": "forged"},
        {"consent": "yes", "csrf": csrf_of(httpx.get(other).text)},  # another link's page
    ):
        refused = httpx.post(url, data=data)
        assert refused.status_code == 400
        assert "Форма устарела" in refused.text
    assert count(container, Subscription) == 0


def test_subscribing_stores_the_consent_with_version_time_and_address(
    container: Container, issue_link: IssueLink, member: str, emulator: object
) -> None:
    url = issue_link()
    csrf = csrf_of(httpx.get(url).text)
    answer = httpx.post(
        url,
        data={"consent": "yes", "csrf": csrf, "lang": "en"},
        headers={"User-Agent": "pages-test/1.0"},
    )
    assert answer.status_code == 303
    assert "/checkout/" in answer.headers["location"]
    with container.sessions() as session:
        subscription = session.scalar(select(Subscription))
        consent = session.scalar(select(MemberConsent))
    assert subscription is not None and consent is not None
    assert subscription.status == "pending_confirmation"
    assert subscription.amount_kopecks == 350_00
    assert subscription.billing_day == 23
    assert subscription.consent_version == consent.text_version == "autopay-2026-11"
    assert consent.accepted_at == START == subscription.consent_accepted_at
    assert str(consent.ip_address) == "127.0.0.1"
    assert consent.user_agent == "pages-test/1.0"
    assert consent.language == "en"
    assert consent.purpose == "autopay"
    assert (consent.source_type, consent.source_id) == ("subscription", str(subscription.id))
    assert len(consent.text_sha256) == 64


def test_a_member_who_left_the_acquirers_page_can_go_back_to_it(
    issue_link: IssueLink, member: str, emulator: object
) -> None:
    url = issue_link()
    answer = httpx.post(url, data={"consent": "yes", "csrf": csrf_of(httpx.get(url).text)})
    checkout = answer.headers["location"]
    again = httpx.get(url)
    assert "Автоплатёж уже подключён" in again.text
    manage = re.search(r'href="(/my/autopay/[^"?]+)', again.text)
    assert manage is not None
    base = url.split("/my/", 1)[0]
    page = httpx.get(base + manage.group(1))
    assert 'data-status="pending_confirmation"' in page.text
    assert f'href="{checkout}"' in page.text


def test_the_links_of_an_erased_member_are_a_friendly_page(
    client: httpx.Client, container: Container, issue_link: IssueLink, member: str
) -> None:
    """Erasure shreds the member's data key; links issued before it must not reach a page
    that needs it (a stack trace), nor subscribe or pay for a pseudonym."""
    subscribe = issue_link()
    manage = issue_link("manage")
    form = httpx.get(subscribe)
    assert form.status_code == 200
    csrf = csrf_of(form.text)
    assert client.delete(f"/v1/members/{member}").status_code == 200
    before = count(container, Subscription)
    for url in (subscribe, manage):
        for lang in ("ru", "en"):
            page = httpx.get(url, params={"lang": lang})
            assert page.status_code == 410, (url, page.text)
            assert page.headers["content-type"].startswith("text/html")
            assert "Traceback" not in page.text
        assert "Ссылка больше не действует" in httpx.get(url).text
    assert "This link is no longer in use" in httpx.get(manage, params={"lang": "en"}).text
    posted = httpx.post(subscribe, data={"csrf": csrf, "consent": "yes"})
    assert posted.status_code == 410
    assert count(container, Subscription) == before
