"""Sign-in throttling: sliding windows of failed sign-ins per user name and per address.

Pure logic with the clock passed in (no I/O, no threads): :class:`FailureWindows` counts
failures per key over ``window_s``; :meth:`retry_after` says how long a key must wait once
it reached its limit. Memory is bounded: at most ``max_keys`` keys are tracked (the oldest
are forgotten first), whatever an attacker sends as user names.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque


class FailureWindows:
    """Failures per key within the last ``window_s`` seconds."""

    def __init__(self, limit: int, window_s: float, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._keys: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._keys.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._keys[key]
            return None
        return times

    def retry_after(self, key: str, now: float) -> int:
        """Seconds until ``key`` may try again (0: it may now)."""
        times = self._recent(key, now)
        if times is None or len(times) < self.limit:
            return 0
        # The window frees a slot when the oldest failure that keeps it full falls out.
        oldest = times[len(times) - self.limit]
        return max(1, math.ceil(oldest + self.window_s - now))

    def fail(self, key: str, now: float) -> None:
        """Count a failure of ``key``."""
        times = self._recent(key, now)
        if times is None:
            times = self._keys[key] = deque(maxlen=self.limit)
        self._keys.move_to_end(key)
        times.append(now)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)

    def undo(self, key: str) -> None:
        """Take back the latest failure of ``key`` (an attempt counted ahead that succeeded)."""
        times = self._keys.get(key)
        if times:
            times.pop()

    def clear(self, key: str) -> None:
        """Forget ``key`` (a successful sign-in)."""
        self._keys.pop(key, None)


class LoginThrottle:
    """Per user name and per client address limits of failed sign-ins.

    An attempt counts as a failure from the moment it starts (:meth:`begin`), so parallel
    attempts cannot slip past the limit while their passwords are being checked; a
    successful one is taken back (:meth:`succeeded`).
    """

    def __init__(
        self, window_s: float, per_user: int, per_address: int, max_keys: int = 10_000
    ) -> None:
        self.users = FailureWindows(per_user, window_s, max_keys)
        self.addresses = FailureWindows(per_address, window_s, max_keys)

    def begin(self, username: str, address: str, now: float) -> int:
        """Seconds to wait before this sign-in is even checked (0: go ahead, and it counts
        as a failure until :meth:`succeeded` takes it back)."""
        user = username.casefold()
        wait = max(self.users.retry_after(user, now), self.addresses.retry_after(address, now))
        if not wait:
            self.users.fail(user, now)
            self.addresses.fail(address, now)
        return wait

    def succeeded(self, username: str, address: str) -> None:
        """A correct password: the user name's failures are cleared, the address's attempt
        taken back (its earlier failures stay)."""
        self.users.clear(username.casefold())
        self.addresses.undo(address)
