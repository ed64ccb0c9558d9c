"""Paging routes: acknowledging a page from the message, and the staff channel list.

* ``GET /ack/{token}`` (public, the signed link is the credential) shows a small page in the
  paged user's language (``users.language``: zh-CN by default, or en; an invalid link gets
  zh-CN with English second) naming the incident, with a button. It never acknowledges:
  link-preview bots and mail scanners fetch links by GET.
* ``POST /ack/{token}`` acknowledges (once) as the paged user; the answer says acknowledged,
  already acknowledged, already used, expired or invalid.
* ``POST /paging/sms-inbound`` (public, authenticated by an HMAC signature with
  ``paging.inbound_sms_secret``): an SMS reply forwarded by the SMS provider, JSON
  ``{"from": "<sender number>", "text": "<message>"}``; the sender's number and the page's
  reply code select the page.
* ``GET|POST /users/{user}/channels``, ``DELETE /users/{user}/channels/{id}`` (admin): a
  staff user's ordered paging channels (audited; addresses masked unless ``?reveal=true``).

Every outcome is counted in ``safehome_paging_acks_total{via,result}``.
"""

from __future__ import annotations

import html
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway import l10n
from gateway.api.deps import PUBLIC, ApiHost, CurrentUser, DbConn, HostDep, UserRole, allow
from gateway.api.routes_pages import SECURITY_HEADERS
from gateway.l10n import Lang
from gateway.paging import acks
from gateway.paging.channels import ChannelError, add_channel, list_channels, remove_channel
from gateway.paging.settings import PagingSettings
from gateway.paging.tokens import (
    AckResult,
    LinkClaims,
    LinkError,
    inbound_signature_ok,
    verify_link,
)
from gateway.storage import languages

SIGNATURE_HEADER = "X-Safehome-Signature"
TIMESTAMP_HEADER = "X-Safehome-Timestamp"
_MAX_INBOUND = 8192

# The confirmation page posts to itself: allow exactly that form action.
_ACK_HEADERS = SECURITY_HEADERS | {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
}

# The answer to an acknowledgement (catalogue key in gateway.l10n, HTTP status).
ANSWERS: dict[AckResult, tuple[str, int]] = {
    AckResult.ACKNOWLEDGED: ("ack.acknowledged", 200),
    AckResult.ALREADY: ("ack.already", 200),
    AckResult.USED: ("ack.used", 409),
    AckResult.EXPIRED: ("ack.expired", 410),
    AckResult.UNKNOWN: ("ack.unknown", 404),
    AckResult.NO_USER: ("ack.no_user", 403),
}


def _answer_text(result: AckResult, lang: Lang | None) -> str:
    """The answer in ``lang``; unknown reader (None): zh-CN, then English."""
    key = ANSWERS[result][0]
    if lang is None:
        return f"{l10n.t('zh-CN', key)} / {l10n.t('en', key)}"
    return l10n.t(lang, key)


def _lang_of(conn: Any, user_id: str | None) -> Lang | None:
    return None if user_id is None else l10n.language(languages.user_language(conn, user_id))


def _paging(host: ApiHost) -> PagingSettings:
    return host.settings.paging


def _count(host: ApiHost, via: str, result: AckResult) -> None:
    metrics = host.metrics
    if metrics is not None:
        metrics.page_acks.labels(via=via, result=result.value).inc()


def _page(title: str, body_html: str, status_code: int = 200, lang: Lang = "zh-CN") -> HTMLResponse:
    doc = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:32em;margin:2em auto;padding:0 1em}"
        "button{font-size:1.4em;padding:.6em 1.2em;width:100%}.en{color:#555}</style>"
        f"</head><body>{body_html}</body></html>"
    )
    return HTMLResponse(doc, status_code=status_code, headers=_ACK_HEADERS)


def _answer_page(result: AckResult, lang: Lang | None = None) -> HTMLResponse:
    key, code = ANSWERS[result]
    if lang is not None:
        body = f"<h1>{html.escape(l10n.t(lang, key))}</h1>"
        return _page(l10n.t(lang, "brand"), body, code, lang)
    zh, en = l10n.t("zh-CN", key), l10n.t("en", key)
    body = f'<h1>{html.escape(zh)}</h1><p class="en" lang="en">{html.escape(en)}</p>'
    return _page("安居守护 / Safe-Home Guardian", body, code)


def _claims(host: ApiHost, token: str) -> LinkClaims | AckResult:
    secret = _paging(host).ack_secret
    if secret is None:
        return AckResult.UNKNOWN
    try:
        return verify_link(secret.get_secret_value(), token, time.time())
    except LinkError as exc:
        return exc.result


class SmsReply(BaseModel):
    """What an inbound SMS reply did: the acknowledgement result and its incident."""

    result: str
    incident_id: int | None
    message: str


class ChannelOut(BaseModel):
    """A staff paging channel; ``address`` masked unless revealed (audited)."""

    id: int
    user_id: str
    position: int
    channel: str
    address: str | None


class ChannelBody(BaseModel):
    """A paging channel to add (``address``: phone number for sms/voice, e-mail for email)."""

    channel: str = Field(min_length=1, max_length=48)
    address: str | None = Field(default=None, max_length=254)
    position: int | None = Field(default=None, ge=0, le=7)


router = APIRouter(tags=["paging"])


@router.get("/ack/{token}", summary="Page acknowledgement: confirmation page (no effect)",
            response_class=HTMLResponse, **PUBLIC)  # fmt: skip
def ack_view(token: str, host: HostDep, conn: DbConn) -> HTMLResponse:
    claims = _claims(host, token)
    if isinstance(claims, AckResult):
        return _answer_page(claims)
    lang = _lang_of(conn, claims.user_id) or "zh-CN"
    view = acks.view_page(conn, claims)
    if view is None:
        return _answer_page(AckResult.UNKNOWN, lang)
    if view.used:
        return _answer_page(AckResult.USED, lang)
    title = l10n.t(lang, "ack.title", id=view.incident_id)
    state = l10n.t(lang, f"state.{view.incident_state}")
    line = l10n.t(lang, "ack.state", label=l10n.type_label(lang, view.incident_type),
                  state=state, when=l10n.local_time(view.raised_at, view.utc_offset_s))  # fmt: skip
    body = (
        f"<h1>{html.escape(title)}</h1><p>{html.escape(line)}</p>"
        f"<p>{html.escape(l10n.t(lang, 'ack.explain'))}</p>"
        f'<form method="post" action="{html.escape(token)}">'
        f'<button type="submit">{html.escape(l10n.t(lang, "ack.button"))}</button></form>'
    )
    return _page(title, body, lang=lang)


@router.post("/ack/{token}", summary="Page acknowledgement: acknowledge once",
             response_class=HTMLResponse, **PUBLIC)  # fmt: skip
def ack_post(token: str, host: HostDep, conn: DbConn) -> HTMLResponse:
    claims = _claims(host, token)
    if isinstance(claims, AckResult):
        _count(host, "link", claims)
        return _answer_page(claims)
    outcome = acks.acknowledge_link(conn, claims)
    _count(host, "link", outcome.result)
    return _answer_page(outcome.result, _lang_of(conn, outcome.user_id or claims.user_id))


@router.post("/paging/sms-inbound", summary="Inbound SMS reply (signed by the provider)",
             response_model=SmsReply, **PUBLIC)  # fmt: skip
async def sms_inbound(request: Request, host: HostDep) -> dict[str, Any]:
    settings = _paging(host)
    if settings.inbound_sms_secret is None:
        # Off unless configured: not a server fault, there is simply nothing here.
        raise HTTPException(status.HTTP_404_NOT_FOUND, "inbound SMS not configured")
    body = await request.body()
    if len(body) > _MAX_INBOUND:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "body too large")
    ok = inbound_signature_ok(
        settings.inbound_sms_secret.get_secret_value(),
        request.headers.get(TIMESTAMP_HEADER, ""), body,
        request.headers.get(SIGNATURE_HEADER, ""),
        now=time.time(), max_skew_s=settings.inbound_max_skew_s,
    )  # fmt: skip
    if not ok:
        _count(host, "sms", AckResult.UNKNOWN)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "bad or stale signature")
    try:
        doc = json.loads(body)
        sender, text = str(doc["from"]), str(doc["text"])
    except (ValueError, KeyError, TypeError):
        raise HTTPException(422, "need from and text") from None
    pool = host.pool

    def run() -> tuple[acks.AckOutcome, Lang | None]:
        with pool.connection() as conn:
            done = acks.acknowledge_reply(conn, sender, text, settings.ack_ttl_s)
            return done, _lang_of(conn, done.user_id)

    outcome, lang = await run_in_threadpool(run)
    _count(host, "sms", outcome.result)
    return {"result": outcome.result.value, "incident_id": outcome.incident_id,
            "message": _answer_text(outcome.result, lang)}  # fmt: skip


@router.get("/users/{user}/channels", summary="A staff user's paging channels",
            response_model=list[ChannelOut], **allow(UserRole.ADMIN))  # fmt: skip
def channels_list(
    user: str, who: CurrentUser, conn: DbConn, reveal: Annotated[bool, Query()] = False
) -> list[dict[str, Any]]:
    try:
        listed = list_channels(conn, user, revealed_to=who.user_id if reveal else None)
        return [c.as_json(reveal=reveal) for c in listed]
    except ChannelError as exc:
        raise HTTPException(exc.status, str(exc)) from None


@router.post("/users/{user}/channels", summary="Add a paging channel (audited)",
             status_code=201, response_model=ChannelOut, **allow(UserRole.ADMIN))  # fmt: skip
def channels_add(user: str, body: ChannelBody, who: CurrentUser, conn: DbConn) -> dict[str, Any]:
    try:
        added = add_channel(conn, user, body.channel, body.address, actor=who.user_id,
                            position=body.position)  # fmt: skip
    except ChannelError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return added.as_json()


@router.delete("/users/{user}/channels/{channel_id}", summary="Remove a paging channel",
               status_code=204, response_model=None, **allow(UserRole.ADMIN))  # fmt: skip
def channels_remove(user: str, channel_id: int, who: CurrentUser, conn: DbConn) -> None:
    try:
        remove_channel(conn, user, channel_id, actor=who.user_id)
    except ChannelError as exc:
        raise HTTPException(exc.status, str(exc)) from None
