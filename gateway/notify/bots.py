"""The group bot channel (WeCom, DingTalk, Feishu) through apprise."""

from __future__ import annotations

import asyncio
import warnings

import apprise

from gateway.notify.delivery import AddressKind, DeliveryResult, Notification, NotifyError


class AppriseNotifier:
    """A group bot (WeCom ``wecombot://``, DingTalk ``dingtalk://``, Feishu ``feishu://``).

    Group bots reach many people: messages carry the bed code, room and incident type only.
    Apprise reports success or failure without a reason, so failures count as transient
    (bounded by ``max_attempts``, after which the contact's next channel is used).
    """

    private = False
    address_kind: AddressKind = None
    broadcast = True

    def __init__(self, url: str, *, channel: str = "bot") -> None:
        self._apprise = apprise.Apprise()
        # Apprise loads its plugins on the first add(); one of them imports the deprecated
        # ``imghdr`` module. That warning is apprise's, not ours: silence it for the load.
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*'imghdr' is deprecated", category=DeprecationWarning
            )
            added = self._apprise.add(url)
        # Never put the URL in the error: it embeds the bot's key.
        if not added:
            raise NotifyError("invalid apprise URL", channel=channel)
        self._lock = asyncio.Lock()

    @property
    def service(self) -> str:
        """The apprise service name (e.g. 'WeCom Bot'), for diagnostics."""
        return str(self._apprise[0].service_name)

    @property
    def plugin(self) -> str:
        """The apprise plugin class in use (e.g. ``NotifyWeComBot``), for diagnostics."""
        return type(self._apprise[0]).__name__

    async def send(self, message: Notification) -> DeliveryResult:
        """Post title and body to the bot."""
        async with self._lock:
            try:
                ok = await asyncio.to_thread(
                    self._apprise.notify, body=message.message.body, title=message.message.title
                )
            except Exception as exc:  # apprise plugins raise arbitrary errors
                return DeliveryResult.transient(f"bot error: {type(exc).__name__}")
        if ok:
            return DeliveryResult.delivered("bot accepted")
        return DeliveryResult.transient("bot delivery failed")
