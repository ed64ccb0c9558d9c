"""Supervision (issue 13 §5): the staffing-ratio check of nursing homes and the district
supervisor's totals. Pure rules in :mod:`gateway.supervision.staffing`; SQL in
:mod:`gateway.storage.supervision`."""
