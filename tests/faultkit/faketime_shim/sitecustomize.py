"""Loaded (through ``PYTHONPATH``) only by a gateway the fault matrix runs under libfaketime.

libfaketime 0.9.10 (Debian 12) with ``FAKETIME_DONT_FAKE_MONOTONIC=1`` answers ``EINVAL`` to
the absolute ``clock_nanosleep(CLOCK_MONOTONIC)`` that Python 3.11's :func:`time.sleep`
uses, while relative waits (``select``, condition variables, asyncio) work. Faking the
monotonic clock as well is no way out: then ``threading`` waits hang. So ``time.sleep``
sleeps in ``select()`` here; nothing else changes.
"""

import select
import time
from typing import SupportsIndex


def _sleep(seconds: float | SupportsIndex) -> None:
    value = float(seconds)
    if value < 0:
        raise ValueError("sleep length must be non-negative")
    select.select([], [], [], value)


time.sleep = _sleep
