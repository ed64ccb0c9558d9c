"""The staff live feed route, ``GET /incidents/stream`` (Server-Sent Events, fed by
:class:`gateway.api.livefeed.LiveFeed`), and ``GET /console/config``."""

from __future__ import annotations

import asyncio

import psycopg
from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from gateway.api.deps import (
    STAFF,
    CurrentUser,
    HostDep,
    SettingsDep,
    allow,
    scope_site,
    session_open,
)
from gateway.api.livefeed import LiveFeed, StreamAuth, stream

router = APIRouter(tags=["incidents"])


class ConsoleConfig(BaseModel):
    """How often the console re-reads the open incidents (seconds)."""

    reconcile_s: float


@router.get(
    "/incidents/stream",
    summary="Live incident changes (Server-Sent Events; resume with Last-Event-ID)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    **allow(*STAFF),
)
async def incident_stream(
    host: HostDep,
    user: CurrentUser,
    site: str | None = None,
    last_event_id: int | None = Header(default=None, alias="Last-Event-ID", ge=0),
) -> StreamingResponse:
    site_id = scope_site(user, site)
    feed: LiveFeed = host.live_feed

    async def still_valid() -> bool:
        try:
            return await asyncio.to_thread(session_open, host.pool, user)
        except psycopg.OperationalError:  # PoolTimeout, PoolClosed too
            return True  # database unreachable: checked again next interval

    auth = StreamAuth(still_valid, user.expires_at, host.settings.api.stream_recheck_s)
    return StreamingResponse(
        stream(feed, site_id, last_event_id, auth),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/console/config", summary="Staff console timings (reconcile interval)",
            tags=["pages"], response_model=ConsoleConfig, **allow(*STAFF))  # fmt: skip
def console_config(settings: SettingsDep, user: CurrentUser) -> dict[str, float]:
    return {"reconcile_s": settings.api.console_reconcile_s}
