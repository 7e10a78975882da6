"""HTTP for member links (the CRM's API) and the member's pages (HTML, not in the API schema).

Thin: read the link, call one use case, render. Every refusal on a page is a page in the
member's language (400 for a damaged link or a missing consent, 410 for an expired link, 409
for a conflict), never problem+json and never a stack trace."""

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from core.errors import DomainError
from core.http import problem_responses
from core.money import parse_kopecks
from core.networks import Network, client_address
from members.access.dependencies import require
from members.endpoints import ExternalId
from members.scopes import Scope
from members.service import Principal
from payments.charges.states import ChargeKind
from payments.pages.links import LinkExpired, LinkInvalid, LinkPurpose, LinkRetired, MemberLink
from payments.pages.locale import TEXTS, Formatter, Language, language_of
from payments.pages.schemas import LinkCreate, LinkOut
from payments.pages.service import AutopayView, ConsentMissing, MemberPages, PaymentLine
from payments.subscriptions.errors import LiveSubscriptionExists

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
NOTICES = {"canceled": "canceled_notice", "returned": "returned_notice"}

Lang = Annotated[str | None, Query(max_length=8)]
FormText = Annotated[str | None, Form(max_length=512)]


def base_url(request: Request, public_url: str | None) -> str:
    """Where members reach this service: the configured public URL, else the request's own."""
    return (public_url or str(request.base_url)).rstrip("/")


def build_api_router(*, pages: MemberPages, public_url: str | None) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["members"])
    Caller = Annotated[Principal, Depends(require(Scope.SUBSCRIPTIONS_WRITE))]

    @router.post(
        "/members/{external_id}/links",
        status_code=status.HTTP_201_CREATED,
        responses=problem_responses(401, 404, 422),
    )
    def create_member_link(
        external_id: ExternalId, body: LinkCreate, caller: Caller, request: Request
    ) -> LinkOut:
        """A signed link to the member's own page, valid for `expires_in_hours` (default 72,
        at most 720) and needing no login: `subscribe` turns auto-pay on (the member reads the
        terms, consents and pays the first month), `manage` is “My auto-pay” (status, card,
        next charge, payments; cancel, change card, pay what is overdue)."""
        return pages.issue_link(caller, external_id, body, base_url(request, public_url))

    return router


def build_pages_router(
    *, pages: MemberPages, public_url: str | None, trusted_proxies: Sequence[Network]
) -> APIRouter:
    router = APIRouter(prefix="/my", include_in_schema=False)

    def render(
        request: Request,
        template: str,
        lang: Language,
        page_path: str,
        title: str,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        other = TEXTS[lang]["switch_lang"]
        response = TEMPLATES.TemplateResponse(
            request,
            template,
            {
                "lang": lang,
                "t": TEXTS[lang],
                "fmt": Formatter(lang),
                "title": title,
                "switch_url": f"{page_path}?lang={other}",
                "organization": context.pop("organization", None),
                **context,
            },
            status_code=status_code,
        )
        # Links are bearer credentials: keep them out of caches and other sites' logs.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    def refused(request: Request, exc: DomainError, lang: Language, page_path: str) -> Response:
        """A refusal as a page: in the member's language, and in the other one below it (a
        member whose link failed may not find the switch)."""
        title, text = _refusal(exc, lang)
        other: Language = "en" if lang == "ru" else "ru"
        other_title, other_text = _refusal(exc, other)
        return render(
            request,
            "message.html",
            lang,
            page_path,
            title,
            exc.status,
            text=text,
            alert=True,
            other_lang=other,
            other_title=other_title,
            other_text=other_text,
        )

    def go(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)

    def autopay_path(token: str) -> str:
        return f"/my/autopay/{token}"

    def return_url(request: Request, token: str, lang: Language) -> str:
        return f"{base_url(request, public_url)}/my/return/{token}?lang={lang}"

    # -- subscribe ----------------------------------------------------------------------------

    def subscribe_page(
        request: Request,
        token: str,
        lang: Language,
        link: MemberLink,
        error: str | None = None,
        status_code: int = 200,
    ) -> Response:
        view = pages.subscribe_view(link)
        path = f"/my/subscribe/{token}"
        t = TEXTS[lang]
        if view.live:
            return render(
                request,
                "message.html",
                lang,
                path,
                t["already_title"],
                organization=view.organization,
                text=t["already_text"],
                link_url=f"{autopay_path(pages.manage_token(link))}?lang={lang}",
                link_text=t["open_autopay"],
            )
        fmt = Formatter(lang)
        return render(
            request,
            "subscribe.html",
            lang,
            path,
            t["subscribe_title"],
            status_code,
            organization=view.organization,
            view=view,
            terms=view.terms(fmt),
            amount=fmt.money(view.amount_kopecks, view.currency),
            action=path,
            csrf=pages.form_token(token, "subscribe"),
            error=error,
        )

    @router.get("/subscribe/{token}", response_class=HTMLResponse)
    def subscribe_get(request: Request, token: str, lang: Lang = None) -> Response:
        language = language_of(lang)
        try:
            link = pages.read(token, LinkPurpose.SUBSCRIBE)
            return subscribe_page(request, token, language, link)
        except DomainError as exc:
            return refused(request, exc, language, f"/my/subscribe/{token}")

    @router.post("/subscribe/{token}", response_class=HTMLResponse)
    def subscribe_post(
        request: Request,
        token: str,
        consent: FormText = None,
        csrf: FormText = None,
        lang: FormText = None,
    ) -> Response:
        language = language_of(lang)
        try:
            link = pages.read(token, LinkPurpose.SUBSCRIBE)
            pages.check_form(token, "subscribe", csrf)
            manage = pages.manage_token(link)
            try:
                confirmation_url = pages.subscribe(
                    link,
                    language=language,
                    consent_given=consent == "yes",
                    ip_address=_client_ip(request, trusted_proxies),
                    user_agent=request.headers.get("user-agent"),
                    return_url=return_url(request, manage, language),
                )
            except ConsentMissing:
                return subscribe_page(
                    request,
                    token,
                    language,
                    link,
                    error=TEXTS[language]["consent_required"],
                    status_code=status.HTTP_400_BAD_REQUEST,
                )
            except LiveSubscriptionExists:
                return go(f"{autopay_path(manage)}?lang={language}")
        except DomainError as exc:
            return refused(request, exc, language, f"/my/subscribe/{token}")
        return go(confirmation_url or f"{autopay_path(manage)}?lang={language}")

    # -- my auto-pay --------------------------------------------------------------------------

    @router.get("/autopay/{token}", response_class=HTMLResponse)
    def autopay_get(
        request: Request, token: str, lang: Lang = None, notice: Lang = None
    ) -> Response:
        language = language_of(lang)
        path = autopay_path(token)
        try:
            link = pages.read(token, LinkPurpose.MANAGE)
            view = pages.autopay_view(link)
        except DomainError as exc:
            return refused(request, exc, language, path)
        t, fmt = TEXTS[language], Formatter(language)
        sub = view.subscription
        return render(
            request,
            "autopay.html",
            language,
            path,
            t["autopay_title"],
            organization=view.organization,
            view=view,
            sub=sub,
            amount_kopecks=parse_kopecks(sub.amount.value) if sub else 0,
            overdue_months=", ".join(fmt.month(m) for m in view.overdue.periods),
            lines=[_line(line, view, fmt, language) for line in view.payments],
            notice=t[NOTICES[notice]] if notice in NOTICES else None,
            base=path,
            csrf={
                "overdue": pages.form_token(token, "overdue"),
                "card": pages.form_token(token, "card"),
            },
        )

    @router.get("/autopay/{token}/cancel", response_class=HTMLResponse)
    def cancel_get(request: Request, token: str, lang: Lang = None) -> Response:
        language = language_of(lang)
        path = autopay_path(token)
        try:
            link = pages.read(token, LinkPurpose.MANAGE)
            view = pages.autopay_view(link)
        except DomainError as exc:
            return refused(request, exc, language, path + "/cancel")
        if not view.can_cancel:
            return go(f"{path}?lang={language}")
        return render(
            request,
            "cancel.html",
            language,
            path + "/cancel",
            TEXTS[language]["cancel_confirm_title"],
            organization=view.organization,
            base=path,
            csrf=pages.form_token(token, "cancel"),
        )

    @router.post("/autopay/{token}/cancel", response_class=HTMLResponse)
    def cancel_post(
        request: Request, token: str, csrf: FormText = None, lang: FormText = None
    ) -> Response:
        language = language_of(lang)
        path = autopay_path(token)
        try:
            link = pages.read(token, LinkPurpose.MANAGE)
            pages.check_form(token, "cancel", csrf)
            pages.cancel(link)
        except DomainError as exc:
            return refused(request, exc, language, path)
        return go(f"{path}?lang={language}&notice=canceled")

    def start_payment(
        request: Request,
        token: str,
        action: str,
        csrf: str | None,
        lang: str | None,
    ) -> Response:
        language = language_of(lang)
        path = autopay_path(token)
        try:
            link = pages.read(token, LinkPurpose.MANAGE)
            pages.check_form(token, action, csrf)
            start = pages.change_card if action == "card" else pages.pay_overdue
            confirmation_url = start(link, return_url(request, token, language))
        except DomainError as exc:
            return refused(request, exc, language, path)
        return go(confirmation_url or f"{path}?lang={language}")

    @router.post("/autopay/{token}/card", response_class=HTMLResponse)
    def change_card_post(
        request: Request, token: str, csrf: FormText = None, lang: FormText = None
    ) -> Response:
        return start_payment(request, token, "card", csrf, lang)

    @router.post("/autopay/{token}/overdue", response_class=HTMLResponse)
    def pay_overdue_post(
        request: Request, token: str, csrf: FormText = None, lang: FormText = None
    ) -> Response:
        return start_payment(request, token, "overdue", csrf, lang)

    @router.get("/return/{token}", response_class=HTMLResponse)
    def returned(request: Request, token: str, lang: Lang = None) -> Response:
        """Back from the acquirer's page: settle what the member just did, then show it."""
        language = language_of(lang)
        try:
            link = pages.read(token, LinkPurpose.MANAGE)
            pages.returned(link)
        except DomainError as exc:
            return refused(request, exc, language, autopay_path(token))
        return go(f"{autopay_path(token)}?lang={language}&notice=returned")

    return router


def _refusal(exc: DomainError, lang: Language) -> tuple[str, str]:
    t = TEXTS[lang]
    if isinstance(exc, LinkExpired):
        return t["link_expired_title"], t["link_expired_text"]
    if isinstance(exc, LinkRetired):
        return t["link_retired_title"], t["link_retired_text"]
    if isinstance(exc, LinkInvalid) and exc.field == "csrf":
        return t["form_stale_title"], t["form_stale_text"]
    if isinstance(exc, LinkInvalid):
        return t["link_invalid_title"], t["link_invalid_text"]
    known = {"nothing-overdue": t["nothing_overdue"], "subscription-not-live": t["not_live"]}
    return t["problem_title"], known.get(exc.type_slug, exc.detail)


def _client_ip(request: Request, trusted_proxies: Sequence[Network]) -> str | None:
    peer = request.client.host if request.client else None
    address = client_address(peer, request.headers.getlist("x-forwarded-for"), trusted_proxies)
    return str(address) if address is not None else None


def _line(line: PaymentLine, view: AutopayView, fmt: Formatter, lang: Language) -> dict[str, str]:
    t = TEXTS[lang]
    what = {
        ChargeKind.INITIAL: t["kind_initial"],
        ChargeKind.RECURRING: t["kind_recurring"],
        ChargeKind.CARD_CHANGE: t["kind_card_change"],
        ChargeKind.ARREARS: t["kind_arrears"],
    }[line.kind].format(
        month=fmt.month(line.period_month),
        months=", ".join(fmt.month(m) for m in line.covered_months),
    )
    return {
        "date": fmt.moment(line.created_at, view.timezone),
        "what": what,
        "amount": fmt.money(line.amount_kopecks, line.currency),
        "status": t.get(f"charge_{line.status}", line.status),
    }
