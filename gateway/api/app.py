"""HTTP API factory. ``build_app(runtime)`` wires routes to a running gateway."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from gateway.runtime import Runtime


def build_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="Safe-Home Guardian gateway", version="0.1.0")

    @app.get("/health", tags=["operations"], summary="Liveness and dependencies (public)")
    def health() -> dict[str, object]:
        session, ingest = runtime.session, runtime.ingest
        return {
            "status": "ok",
            "broker_connected": bool(session and session.connected.is_set()),
            "database_up": bool(ingest and ingest.database_up),
            "timescaledb": runtime.tsinfo.edition.value if runtime.tsinfo else None,
        }

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics (public, no PII)")
    def metrics() -> Response:
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
