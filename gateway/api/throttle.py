"""Sign-in throttling decisions: pure logic on failure times (no I/O, clocks passed in).

The policy (``api.login_window_s``, ``api.login_max_failures_per_user``,
``api.login_max_failures_per_address``): a user name (case-blind) or a client address that
has reached its limit of failed sign-ins within the last window must wait until its oldest
failure that keeps the window full leaves it (``Retry-After``). An attempt counts as a
failure from the moment it is admitted, so parallel attempts cannot slip past the limit
while their passwords are being checked; a successful one clears the user name's failures
and takes back its own count of the address (the address's earlier failures stay).

:func:`decide` turns the stored failure times of both keys into a :class:`Verdict` (wait,
or go ahead with the times to store). The times are kept by
:mod:`gateway.api.login_throttle` in the database, shared by every gateway process.
:class:`Lockouts` is a process's bounded memory of keys it already saw locked, so a flood on
a locked key is answered without the database.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.settings import ApiSettings


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """At most ``per_user`` / ``per_address`` failures within ``window``."""

    window: timedelta
    per_user: int
    per_address: int

    @classmethod
    def of(cls, api: ApiSettings) -> ThrottlePolicy:
        return cls(
            timedelta(seconds=api.login_window_s),
            api.login_max_failures_per_user,
            api.login_max_failures_per_address,
        )


def user_key(username: str) -> str:
    """User names compare case-blind."""
    return username.casefold()


def recent(failures: Sequence[datetime], now: datetime, window: timedelta) -> tuple[datetime, ...]:
    """The failures inside the window ending at ``now``, oldest first."""
    return tuple(sorted(t for t in failures if t > now - window))


def retry_after(failures: Sequence[datetime], limit: int, window: timedelta, now: datetime) -> int:
    """Seconds until a key with these failures may try again (0: it may now)."""
    times = recent(failures, now, window)
    if len(times) < limit:
        return 0
    # The window frees a slot when the oldest failure that keeps it full falls out.
    oldest = times[len(times) - limit]
    return max(1, math.ceil((oldest + window - now).total_seconds()))


@dataclass(frozen=True, slots=True)
class Verdict:
    """An attempt's fate: how long its user name and its address must wait (both 0:
    admitted, and counted as a failure at ``now``) and the failure times to store for each
    (old ones dropped)."""

    user_wait: int
    address_wait: int
    now: datetime
    user: tuple[datetime, ...]
    address: tuple[datetime, ...]

    @property
    def wait(self) -> int:
        """Seconds until the attempt may be made (``Retry-After``; 0: admitted)."""
        return max(self.user_wait, self.address_wait)

    @property
    def admitted(self) -> bool:
        return self.wait == 0


def decide(
    user: Sequence[datetime], address: Sequence[datetime], now: datetime, policy: ThrottlePolicy
) -> Verdict:
    """Admit a sign-in attempt (counting it ahead as a failure of both keys) or make it wait."""
    u, a = recent(user, now, policy.window), recent(address, now, policy.window)
    user_wait = retry_after(u, policy.per_user, policy.window, now)
    address_wait = retry_after(a, policy.per_address, policy.window, now)
    if not user_wait and not address_wait:
        u, a = (*u, now)[-policy.per_user :], (*a, now)[-policy.per_address :]
    return Verdict(user_wait, address_wait, now, u, a)


def take_back(failures: Sequence[datetime], at: datetime) -> tuple[datetime, ...]:
    """``failures`` without one count at ``at`` (a successful attempt admitted then)."""
    out = list(failures)
    if at in out:
        out.remove(at)
    return tuple(out)


RECHECK_S = 10.0


class Lockouts:
    """Keys known to be locked, until when (a process's monotonic clock), bounded: at most
    ``max_keys`` (the oldest forgotten first), whatever an attacker sends.

    A key is trusted to be locked for at most ``recheck_s`` after it was noted (then the
    database is asked again): an account unlocked by a supervisor through another gateway
    process signs in here again within that time, while a flood on a locked key still costs
    at most one database trip per key and ``recheck_s``."""

    def __init__(self, max_keys: int = 10_000, recheck_s: float = RECHECK_S) -> None:
        self.max_keys = max_keys
        self.recheck_s = recheck_s
        self._until: OrderedDict[str, tuple[float, float]] = OrderedDict()  # (until, recheck)

    def __len__(self) -> int:
        return len(self._until)

    def wait(self, key: str, now: float) -> int:
        """Seconds ``key`` is still known to be locked (0: not known to be, or time to ask the
        database again)."""
        known = self._until.get(key)
        if known is None:
            return 0
        until, recheck = known
        if until <= now:
            del self._until[key]
            return 0
        if recheck <= now:  # ask the database again (kept: a renewal is not a new lockout)
            return 0
        return max(1, math.ceil(until - now))

    def remember(self, key: str, until: float, now: float) -> bool:
        """Note at ``now`` that ``key`` is locked until ``until``; whether it was not known to
        be locked before."""
        known = self._until.get(key)
        self._until[key] = (max(until, known[0] if known else until), now + self.recheck_s)
        self._until.move_to_end(key)
        while len(self._until) > self.max_keys:
            self._until.popitem(last=False)
        return known is None or known[0] <= now

    def forget(self, key: str) -> None:
        self._until.pop(key, None)
