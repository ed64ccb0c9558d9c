"""Facts of the domain that several parts of the gateway share, each defined once here.

* :data:`OPEN_STATES`: the incident states that are still open (raised, acknowledged,
  dispatched, on scene), in lifecycle order, from the workflow's own table
  (:mod:`gateway.workflow.transitions`);
* :data:`PRIORITIES`: the incident priority scale, 1 (most urgent) to 5;
* :data:`DEFAULT_UTC_OFFSET_S`: the UTC offset of a site that has none of its own (China's,
  UTC+8), from :mod:`analytics.types` (the pure detectors need it too). Local time is always
  the site's (``sites.utc_offset_s``); this default applies only where no site is known.
"""

from __future__ import annotations

from typing import Final

from analytics.types import DEFAULT_UTC_OFFSET_S as _DEFAULT_UTC_OFFSET_S
from gateway.workflow.transitions import State

OPEN_STATES: Final[tuple[str, ...]] = tuple(s.value for s in State if s.open)
"""The open incident states as stored (``incidents.state``), in lifecycle order."""

PRIORITIES: Final = range(1, 6)
"""The incident priority scale: 1 is the most urgent, 5 the least."""

DEFAULT_UTC_OFFSET_S: Final = _DEFAULT_UTC_OFFSET_S
"""The UTC offset (seconds, float) where no site gives one."""

DEFAULT_UTC_OFFSET_S_INT: Final = int(_DEFAULT_UTC_OFFSET_S)
"""The same, in the whole seconds of ``sites.utc_offset_s`` and site manifests."""


def open_states_sql(column: str = "state") -> str:
    """An SQL condition: ``column`` holds an open state (the states are constants, no input)."""
    return f"{column} IN ({', '.join(repr(s) for s in OPEN_STATES)})"
