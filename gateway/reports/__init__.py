"""Reports computed from the stored incidents and detections (no I/O besides the database).

* :func:`gateway.reports.sla.sla_report`: the monthly SLA report of one site (answer times
  against the telecare standards, attendance and resolution times, false alarms, resident
  cancellations, device online rate), with text, CSV, JSON and PNG outputs.
"""

from gateway.reports.sla import SlaReport, sla_report

__all__ = ["SlaReport", "sla_report"]
