"""The webhook channel: a JSON document POSTed to a configured endpoint, optionally signed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import urllib.error
from typing import Any

from gateway.notify.delivery import (
    AddressKind,
    DeliveryResult,
    Notification,
    NotifyError,
    classify_http,
    http_post,
    network_failure,
)
from gateway.notify.settings import WebhookEndpoint

SIGNATURE_HEADER = "X-Safehome-Signature"
TIMESTAMP_HEADER = "X-Safehome-Timestamp"
DELIVERY_HEADER = "X-Safehome-Delivery"


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``timestamp + "." + body``)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookNotifier:
    """POST a JSON document to a configured endpoint, optionally HMAC-SHA256 signed.

    Headers: ``X-Safehome-Delivery`` (the notification id, for de-duplication: delivery is
    at-least-once), ``X-Safehome-Timestamp`` (unix seconds) and, with a secret,
    ``X-Safehome-Signature: sha256=<hex HMAC of "<timestamp>.<body>">``.
    """

    address_kind: AddressKind = None
    broadcast = False  # the document names the contact: one per contact

    def __init__(self, endpoint: WebhookEndpoint) -> None:
        self._endpoint = endpoint
        url = endpoint.url.get_secret_value()
        if not url.lower().startswith(("http://", "https://")):
            raise NotifyError("webhook URL must be http(s)")
        self._url = url

    @property
    def private(self) -> bool:
        """As configured: only a one-to-one endpoint may receive names."""
        return self._endpoint.private

    def payload(self, message: Notification) -> dict[str, Any]:
        """The JSON document posted for ``message``."""
        doc: dict[str, Any] = {
            "event": "incident.notification",
            "notification_id": message.notification_id,
            "incident_id": message.incident_id,
            "contact_id": message.contact_id,
            "channel": message.channel,
            "title": message.message.title,
            "body": message.message.body,
            "fields": message.message.fields,
        }
        if message.recipient_kind == "staff":  # a page for one staff user (ids only)
            doc |= {"event": "staff.page", "user_id": message.user_id, "page_id": message.page_id}
        elif message.recipient_kind == "user":  # a notice not tied to an incident
            doc |= {"event": "user.notice", "incident_id": None, "user_id": message.user_id}
        return doc

    async def send(self, message: Notification) -> DeliveryResult:
        """POST the JSON document; classify the HTTP status."""
        body = json.dumps(self.payload(message), ensure_ascii=False).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "safehome-guardian",
            DELIVERY_HEADER: str(message.notification_id),
            TIMESTAMP_HEADER: timestamp,
        }
        if self._endpoint.secret is not None:
            headers[SIGNATURE_HEADER] = webhook_signature(
                self._endpoint.secret.get_secret_value(), timestamp, body
            )
        try:
            status, _ = await asyncio.to_thread(
                http_post, self._url, body, headers, self._endpoint.timeout_s
            )
        except (OSError, urllib.error.URLError) as exc:
            return network_failure(exc)
        return classify_http(status)
