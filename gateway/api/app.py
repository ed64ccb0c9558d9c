"""HTTP API factory. ``build_app(runtime)`` wires routes to a running gateway.

The app needs ``runtime.api_pool`` (a sync :class:`psycopg_pool.ConnectionPool` of
autocommit connections, opened by the runtime before the API starts) and a token signing
secret (:func:`gateway.api.auth.check_jwt_secret`); without a good secret it refuses to be
built. Route handlers that touch the database are plain ``def`` functions: FastAPI runs
them in its worker threads, so the sync workflow service never blocks the event loop.

Every route declares who may call it (``**allow(...)`` or ``**PUBLIC``, see
``gateway.api.auth``). OpenAPI stays published at ``/openapi.json`` and ``/docs``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel

from gateway import audit
from gateway.api.auth import AuthError, LoginGuard, check_jwt_secret
from gateway.api.bodylimit import BodyLimitMiddleware
from gateway.api.deps import PUBLIC, ApiHost, GatewayHost, install_host
from gateway.api.errors import install_error_handlers
from gateway.api.livefeed import LiveFeed
from gateway.api.routes_auth import router as auth_router
from gateway.api.routes_board import router as board_router
from gateway.api.routes_calls import router as calls_router
from gateway.api.routes_commissioning import router as commissioning_router
from gateway.api.routes_console import router as console_router
from gateway.api.routes_devices import router as devices_router
from gateway.api.routes_districts import router as districts_router
from gateway.api.routes_docs import router as docs_router
from gateway.api.routes_family import router as family_router
from gateway.api.routes_family_away import router as family_away_router
from gateway.api.routes_family_ratings import router as family_ratings_router
from gateway.api.routes_family_services import router as family_services_router
from gateway.api.routes_family_status import router as family_status_router
from gateway.api.routes_handover import router as handover_router
from gateway.api.routes_incidents import router as incidents_router
from gateway.api.routes_language import router as language_router
from gateway.api.routes_live import router as live_router
from gateway.api.routes_pages import router as pages_router
from gateway.api.routes_paging import router as paging_router
from gateway.api.routes_registry import router as registry_router
from gateway.api.routes_reports import router as reports_router
from gateway.api.routes_supervision import router as supervision_router
from gateway.api.routes_users import router as users_router
from gateway.api.routes_visits import router as visits_router
from gateway.api.routes_worker_calls import router as worker_calls_router
from gateway.brokersync import BrokerSync
from gateway.storage.probe import database_ready

READY_TIMEOUT_S = 2.0  # /readyz: the database must answer within this long


class Health(BaseModel):
    """Liveness: the process answers; whether the broker and the database are up."""

    status: str
    broker_connected: bool
    database_up: bool
    timescaledb: str | None


class Readiness(BaseModel):
    """Readiness (``status`` ready, not ready or standby) and why."""

    status: str
    broker_connected: bool
    database_up: bool
    role: str


def build_app(runtime: GatewayHost) -> FastAPI:
    """The gateway's FastAPI app; raises :class:`AuthError` without a usable jwt_secret."""
    settings = runtime.settings
    secret = check_jwt_secret(settings.api)
    pool = runtime.api_pool
    if pool is None:
        raise AuthError("the API needs the runtime's database pool (runtime.api_pool)")
    # /docs and /redoc come from routes_docs (local files, no CDN).
    app = FastAPI(
        title="Safe-Home Guardian gateway", version="0.1.0", docs_url=None, redoc_url=None
    )
    # Hardening (issue 10 §3): sign-in throttling and the argon2 limit; bodies over
    # api.max_body_bytes refused with 413 before routing and authentication read them.
    # The runtime's registry (served at /metrics); a private one for an app built bare.
    registry = runtime.metrics.registry if runtime.metrics is not None else CollectorRegistry()
    install_host(app, ApiHost(
        settings=settings,
        pool=pool,
        jwt_secret=secret,
        broker_sync=BrokerSync(settings),
        read_ledger=audit.ReadLedger(settings.audit.read_window_s),
        login_guard=LoginGuard(settings.api, registry, secret),
        live_feed=LiveFeed(pool, settings.database.conninfo(), stopping=lambda: runtime.stopping),
        metrics=runtime.metrics,
        registry_changed=runtime.registry_changed,
    ))  # fmt: skip
    bodies_refused = Counter(
        "safehome_api_bodies_refused", "Requests refused with 413 (body over api.max_body_bytes)",
        registry=registry,
    )  # fmt: skip
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.api.max_body_bytes, on_refused=bodies_refused.inc
    )

    # /health is liveness (the process answers: always 200); /readyz is readiness.
    @app.get("/health", tags=["operations"], summary="Liveness and dependencies (public)",
             response_model=Health, **PUBLIC)  # fmt: skip
    def health() -> dict[str, object]:
        session, ingest = runtime.session, runtime.ingest
        # The active gateway knows from its writer; a standby (no writer) asks the database.
        database = ingest.database_up if ingest else database_ready(pool, READY_TIMEOUT_S)
        return {
            "status": "ok",
            "broker_connected": bool(session and session.connected.is_set()),
            "database_up": database,
            "timescaledb": runtime.tsinfo.edition.value if runtime.tsinfo else None,
        }

    @app.get("/readyz", tags=["operations"],
             summary="Readiness: 503 unless the database answers and the broker is connected "
                     "(and on the standby of a failover pair)",
             response_model=Readiness,
             responses={503: {"model": Readiness, "description": "not ready (or standby)"}},
             **PUBLIC)  # fmt: skip
    def readyz() -> JSONResponse:
        session = runtime.session
        broker = bool(session and session.connected.is_set())
        database = database_ready(pool, READY_TIMEOUT_S)
        # The standby of a failover pair serves the API but is not ready (gateway.lease).
        standby = runtime.standby
        ready = broker and database and not standby
        status = "standby" if standby else "ready" if ready else "not ready"
        body = {"status": status, "broker_connected": broker, "database_up": database,
                "role": "standby" if standby else "active"}  # fmt: skip
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics (public, no PII)",
             response_class=PlainTextResponse,
             **PUBLIC)  # fmt: skip
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    install_error_handlers(app)  # domain errors -> 404/409/413/422/403/503 (api/errors.py)

    _document_error_details(app)
    app.include_router(auth_router)
    # The stream before /incidents/{incident_id}, which would otherwise match "stream".
    app.include_router(live_router)
    app.include_router(incidents_router)
    app.include_router(calls_router)  # click-to-call, call outcomes, incident notes
    app.include_router(console_router)  # console rows, site clock and targets, names
    app.include_router(handover_router)  # the shift handover summary
    app.include_router(board_router)  # the live board of beds and homes
    app.include_router(family_router)
    app.include_router(family_status_router)  # the family view's status line
    app.include_router(family_ratings_router)  # family: rate a resolved incident
    app.include_router(family_away_router)  # family: away mode 随家人外出
    app.include_router(family_services_router)  # family: services delivered
    app.include_router(devices_router)
    app.include_router(registry_router)  # installers: sites, beds, residents, import
    app.include_router(commissioning_router)  # installers: devices, acceptance tests
    app.include_router(reports_router)
    app.include_router(users_router)  # admins: deactivate, reactivate, password
    app.include_router(language_router)  # admins: a user's or contact's language (l10n)
    app.include_router(paging_router)  # /ack/{token} (signed link), channels (admin)
    app.include_router(visits_router)  # 探访关爱: worker's visits, door-knock tasks
    app.include_router(worker_calls_router)  # 探访关爱: the worker calls their elders
    app.include_router(supervision_router)  # district figures, staffing; /worker, /district
    app.include_router(districts_router)  # admins: sites and supervisors of districts
    app.include_router(pages_router)  # /, /family, /static/*: no data, PUBLIC
    app.include_router(docs_router)  # /docs, /redoc (local assets), /favicon.ico
    return app


def _document_error_details(app: FastAPI) -> None:
    """Say in the OpenAPI document what a 422 really carries: FastAPI's list of validation
    errors, or a sentence (with a ``hint``) when a domain rule refused the request (found by
    the schemathesis run: a string ``detail`` violated the generated schema)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            schemas = spec.get("components", {}).get("schemas", {})
            error = schemas.get("HTTPValidationError")
            if error is not None:
                detail = error["properties"]["detail"]
                error["properties"]["detail"] = {
                    "title": "Detail", "anyOf": [{k: v for k, v in detail.items() if k != "title"},
                                                 {"type": "string"}],
                }  # fmt: skip
                error["properties"]["hint"] = {"title": "Hint", "type": "string"}
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
