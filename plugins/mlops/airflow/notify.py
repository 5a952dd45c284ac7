"""Failure mail: Airflow's SmtpNotifier, rendered afresh for every failure, with a sender always found."""

from __future__ import annotations

import copy

from airflow.providers.common.compat.sdk import conf
from airflow.providers.smtp.notifications.smtp import SmtpNotifier


class FailureMailNotifier(SmtpNotifier):
    """An SmtpNotifier that renders its templates on a copy and falls back to a configured sender.

    BaseNotifier renders its template fields in place, so a notifier object that is called twice
    in one process (retries, or `dag.test()` runs of several intervals) would resend the first
    rendering: the wrong interval in the subject.

    The sender is the SMTP connection's `from_email`; without one, `fallback_from` (the pipeline's
    `alerts.from_email`), then Airflow's `[email] from_email`. SmtpNotifier alone sends nothing
    when the connection has no sender.
    """

    def __init__(self, *args, fallback_from: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fallback_from = fallback_from

    def __call__(self, *args, **kwargs):
        return SmtpNotifier.__call__(copy.copy(self), *args, **kwargs)

    def _build_email_content(self, smtp, context) -> None:
        if self.from_email is None and smtp.from_email is None:
            self.from_email = self.fallback_from or conf.get("email", "from_email", fallback=None)
            if not self.from_email:
                raise ValueError(
                    f"no sender for the alert mail: the SMTP connection {self.smtp_conn_id!r} has no from_email, "
                    "the pipeline no alerts.from_email, and Airflow no [email] from_email: set one of them"
                )
        super()._build_email_content(smtp, context)
