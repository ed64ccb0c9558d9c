"""Family routes: "is my relative safe?" for the residents linked to the signed-in user.

A family member sees only residents linked to them (``family_links``); any other resident
id answers 404, exactly like one that does not exist, so existence never leaks. Incidents
are shown only with the resident's ``consent_family_incidents`` and vitals only with
``consent_family_health``; each vitals read is audited.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from psycopg.rows import dict_row

from gateway.api.deps import CurrentUser, DbConn, UserRole, allow
from gateway.api.routes_incidents import OPEN_STATES, load_last_vitals
from gateway.workflow.service import IncidentService

_LINKED_SQL = """
SELECT r.resident_id, r.display_name, r.status, r.consent_family_health,
       r.consent_family_incidents
FROM family_links f JOIN residents r ON r.resident_id = f.resident_id
WHERE f.user_id = %s AND (%s::text IS NULL OR r.resident_id = %s)
ORDER BY r.resident_id
"""

# Care incidents only (technical ones are the staff's business), newest first; who handles
# it is the acknowledging user's name or the dispatched responder.
_INCIDENTS_SQL = """
SELECT i.id, i.type, i.state, i.raised_at, i.acknowledged_at, i.on_scene_at, i.resolved_at,
       i.outcome, coalesce(u.username, i.acknowledged_by) AS handled_by, i.responder
FROM incidents i LEFT JOIN users u ON u.user_id = i.acknowledged_by
WHERE i.resident_id = %s AND NOT i.technical
ORDER BY i.raised_at DESC
LIMIT %s
"""


router = APIRouter(tags=["family"])
FAMILY_ONLY = allow(UserRole.FAMILY)


@router.get("/family/residents", summary="My linked relatives", **FAMILY_ONLY)
def my_residents(user: CurrentUser, conn: DbConn) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_LINKED_SQL, (user.user_id, None, None)).fetchall()
    return [{"resident_id": r["resident_id"], "display_name": r["display_name"]}
            for r in rows]  # fmt: skip


@router.get("/family/residents/{resident_id}", summary="Is my relative safe?", **FAMILY_ONLY)
def my_resident(resident_id: str, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_LINKED_SQL, (user.user_id, resident_id, resident_id)).fetchone()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such resident")
    out: dict[str, Any] = {
        "resident_id": row["resident_id"],
        "display_name": row["display_name"],
        "status": row["status"],
    }
    if row["consent_family_incidents"]:
        with conn.cursor(row_factory=dict_row) as cur:
            history = cur.execute(_INCIDENTS_SQL, (resident_id, 10)).fetchall()
        open_ = [i for i in history if i["state"] in OPEN_STATES]
        out["safe"] = not open_
        out["open_incident"] = open_[0] if open_ else None
        out["recent_incidents"] = history
    else:
        out["safe"] = None  # not shared with the family
        out["open_incident"] = None
        out["recent_incidents"] = None
    if row["consent_family_health"]:
        IncidentService(conn).record_read(user.user_id, resident_id, "family_vitals")
        out["vitals"] = load_last_vitals(conn, resident_id)
    else:
        out["vitals"] = None
    out["vitals_shared"] = bool(row["consent_family_health"])
    out["incidents_shared"] = bool(row["consent_family_incidents"])
    return out
