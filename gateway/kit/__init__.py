"""The safe-home kit (issue 12): home hubs and their child sensors, hazard alarms and home
activity from door and motion sensors. See docs/device-protocol.md and docs/home-activity.md.
"""
