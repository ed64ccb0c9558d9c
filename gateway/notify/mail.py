"""The e-mail channel: plain text through SMTP (STARTTLS or implicit TLS)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage

from gateway.notify.delivery import (
    AddressKind,
    DeliveryResult,
    Notification,
    NotifyError,
    network_failure,
)
from gateway.notify.settings import SmtpSettings


class EmailNotifier:
    """Plain-text e-mail through SMTP (stdlib ``smtplib`` in a thread), STARTTLS optional."""

    private = True
    address_kind: AddressKind = "email"
    broadcast = False

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    def build(self, message: Notification) -> EmailMessage:
        """The e-mail for ``message`` (the recipient is the contact's address)."""
        if message.address is None:
            raise NotifyError("e-mail needs an address", channel=message.channel)
        mail = EmailMessage()
        mail["From"] = self._settings.from_address
        mail["To"] = message.address
        mail["Subject"] = message.message.title
        mail["Message-ID"] = f"<notification-{message.notification_id}@safehome>"
        mail.set_content(message.message.body)
        return mail

    def _send_sync(self, mail: EmailMessage) -> None:
        s = self._settings
        # smtplib's own default context does not verify certificates: always pass ours.
        context = ssl.create_default_context(cafile=s.ca_file)
        smtp = (
            smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=context)
            if s.implicit_tls
            else smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
        )
        with smtp:
            if s.starttls:
                smtp.starttls(context=context)
            if s.username and s.password is not None:
                smtp.login(s.username, s.password.get_secret_value())
            smtp.send_message(mail)

    async def send(self, message: Notification) -> DeliveryResult:
        """Send the mail; 5xx replies are permanent, 4xx and network errors transient."""
        if not message.address:
            return DeliveryResult.permanent("no e-mail address")
        mail = self.build(message)
        try:
            await asyncio.to_thread(self._send_sync, mail)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if codes and all(400 <= c < 500 for c in codes):
                return DeliveryResult.transient(f"smtp recipient refused {codes[0]}")
            return DeliveryResult.permanent(f"smtp recipient refused {codes[0] if codes else ''}")
        except smtplib.SMTPResponseException as exc:
            code = int(exc.smtp_code)
            if 400 <= code < 500:
                return DeliveryResult.transient(f"smtp {code}")
            return DeliveryResult.permanent(f"smtp {code}")
        except smtplib.SMTPNotSupportedError:
            return DeliveryResult.permanent("smtp server lacks a required extension")
        except ssl.SSLCertVerificationError:
            return DeliveryResult.permanent("smtp certificate not trusted")
        except (smtplib.SMTPException, OSError) as exc:
            return network_failure(exc)
        return DeliveryResult.delivered("smtp accepted")
