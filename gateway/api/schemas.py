"""Response models of the API shared by several route modules: what a route answers, so the
OpenAPI document carries a response schema for every route.

The models describe the bodies the routes already return (field names and order as the
console in ``gateway/api/static`` and the tests read them). :class:`ApiModel` keeps any field
a model does not list (``extra="allow"``): a model never drops what a route returns.
"""

from __future__ import annotations

import dataclasses
import typing
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from gateway.escalation.timeline import EscalationEntry, EscalationStatus
from gateway.workflow.service import Incident, TimelineEvent


class ApiModel(BaseModel):
    """Base of the response models: fields beyond the listed ones pass through unchanged."""

    model_config = ConfigDict(extra="allow")


def fields_of(cls: type[Any]) -> dict[str, Any]:
    """``create_model`` field definitions of a dataclass (its resolved annotations)."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], ...) for f in dataclasses.fields(cls)}


# An incident as the API returns it: the row of gateway.workflow.service.Incident (one
# definition of its columns) and the SLA durations in seconds.
IncidentOut = create_model(
    "IncidentOut",
    __base__=ApiModel,
    __doc__="An incident; SLA durations in seconds (null until reached).",
    **fields_of(Incident),
    time_to_acknowledge_s=(float | None, None),
    time_to_on_scene_s=(float | None, None),
    time_to_resolve_s=(float | None, None),
)


class IncidentListItem(IncidentOut):
    """An incident of the list, with where to go: bed code and room or household label."""

    bed_code: str | None
    location_kind: str | None
    location_label: str | None


class IncidentDetail(IncidentOut):
    """One incident with its timeline and its escalation (steps, pages, messages)."""

    timeline: list[TimelineEvent]
    escalation_status: EscalationStatus | None
    escalation: list[EscalationEntry]


class LastCommissioning(ApiModel):
    """The result of a device's latest commissioning record."""

    result: str
    at: datetime | None
    test_id: str | None


class DeviceOut(ApiModel):
    """A device with its binding and status (``online`` by its heartbeat deadline)."""

    device_id: str
    site_id: str
    kind: str
    model: str | None
    serial: str | None
    firmware: str | None
    location_id: str | None
    location_label: str | None
    bed_id: str | None
    bed_code: str | None
    resident_id: str | None
    elder_code: str | None
    heartbeat_interval_s: int | None
    active: bool
    commissioned_at: datetime | None
    decommissioned_at: datetime | None
    replaced_by: str | None
    last_seen: datetime | None
    reported_online: bool | None
    battery: float | None
    signal: float | None
    reported_firmware: str | None
    running_test: str | None
    online: bool
    last_commissioning: LastCommissioning | None


class VitalsOut(ApiModel):
    """A resident's latest vitals sample (last 24 h)."""

    time: datetime
    device_id: str
    heart_rate: float | None
    breathing_rate: float | None
    presence: bool | None


class IncidentSummary(ApiModel):
    """A past incident of a resident (summary columns; the staff card adds priority,
    acknowledged_by, responder, resolved_at and outcome, the family view its own)."""

    id: int
    type: str
    state: str
    raised_at: datetime
