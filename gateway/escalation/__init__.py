"""Incident escalation: ladders from config, the duty roster, database timers, intake.

* :mod:`gateway.escalation.ladder` — ``config/escalation.toml`` (default + per-site ladders);
* :mod:`gateway.escalation.roster` — ``duty_shifts``: who is on duty now;
* :mod:`gateway.escalation.intake` — stored detections become incidents (analysis hook);
* :mod:`gateway.escalation.worker` — due timers perform tiers, transactionally.
"""
