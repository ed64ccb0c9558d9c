"""The SMS channel: an approved template to the contact's phone through an SMS provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from gateway.notify.delivery import AddressKind, DeliveryResult, Notification


class SmsProvider(Protocol):
    """An SMS gateway that sends approved templates (free text is not allowed in China)."""

    async def send_template(
        self, phone: str, template_code: str, params: Mapping[str, str], *, out_id: str
    ) -> DeliveryResult:
        """Send one templated SMS; never raises for delivery failures."""
        ...


class SmsNotifier:
    """A template SMS to the contact's phone through an :class:`SmsProvider`."""

    private = True
    address_kind: AddressKind = "phone"
    broadcast = False

    def __init__(
        self, provider: SmsProvider, template_code: str, staff_template_code: str | None = None
    ) -> None:
        self._provider = provider
        self._template_code = template_code
        self._staff_template_code = staff_template_code or template_code

    async def send(self, message: Notification) -> DeliveryResult:
        """Send the approved template with the notification's (name-free) parameters; a
        staff page uses the staff template (with the reply code)."""
        if not message.address:
            return DeliveryResult.permanent("no phone number")
        staff = message.recipient_kind == "staff"
        phone = message.address
        if phone.startswith("+86"):  # Aliyun wants mainland numbers without the prefix
            phone = phone[3:]
        return await self._provider.send_template(
            phone,
            self._staff_template_code if staff else self._template_code,
            message.sms_params,
            out_id=str(message.notification_id),
        )
