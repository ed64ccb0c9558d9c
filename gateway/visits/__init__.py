"""Visiting care (探访关爱): assessments, risk categories, visit plans and records, and
"knock on the door" tasks (issue 13). Pure rules in :mod:`gateway.visits.plans`, the
configuration in :mod:`gateway.visits.config`, the actions in :mod:`gateway.visits.service`;
SQL lives in :mod:`gateway.storage.visits`."""
