"""Family notifications: channel adapters (webhook, e-mail, group bots, SMS) and the outbox.

See :mod:`gateway.notify.outbox` for the delivery flow and :mod:`gateway.notify.messages`
for what each audience may read.
"""

from gateway.notify.channels import (
    AliyunSmsProvider,
    AppriseNotifier,
    DeliveryResult,
    EmailNotifier,
    Notification,
    Notifier,
    NotifyError,
    Outcome,
    SmsNotifier,
    SmsProvider,
    WebhookNotifier,
    build_notifiers,
)
from gateway.notify.messages import Audience, IncidentFacts, RenderedMessage, render
from gateway.notify.outbox import (
    ContactExhausted,
    EnqueueResult,
    IncidentNotice,
    OutboxWorker,
    contact_status,
    enqueue_incident,
)
from gateway.notify.settings import NotifySettings

__all__ = [
    "AliyunSmsProvider",
    "AppriseNotifier",
    "Audience",
    "ContactExhausted",
    "DeliveryResult",
    "EmailNotifier",
    "EnqueueResult",
    "IncidentFacts",
    "IncidentNotice",
    "Notification",
    "Notifier",
    "NotifyError",
    "NotifySettings",
    "OutboxWorker",
    "Outcome",
    "RenderedMessage",
    "SmsNotifier",
    "SmsProvider",
    "WebhookNotifier",
    "build_notifiers",
    "contact_status",
    "enqueue_incident",
    "render",
]
