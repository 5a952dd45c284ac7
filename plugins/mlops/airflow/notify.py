"""Failure mail: Airflow's SmtpNotifier, rendered afresh for every failure, with a plain-text part and a
sender always found.

Before rendering, the notifier puts `mail` into the template context (see :func:`mail_facts`): the
interval the task processed (its params' dates, else the run's data interval), the try as a person
reads it (a failure that is not retried says so, never "1 of 3"), links to the reports, and the
failure's text without the lines those links replace.
"""

from __future__ import annotations

import copy
import datetime as dt
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import conf
from airflow.providers.smtp.hooks.smtp import SmtpHook
from airflow.providers.smtp.notifications.smtp import SmtpNotifier

from mlops.core.interval import Interval

PARAM_RANGES = (("start", "end"), ("window_start", "window_end"))  # params that set the processed dates
NO_INTERVAL = "none (run without a logical date)"


def processed_interval(params: dict[str, Any], start: dt.datetime | None, end: dt.datetime | None) -> str | None:
    """The days a task worked on, as an interval key (`2013-02-08`, `2013-02-04..2013-02-11`), or None.

    The params' dates win (a run triggered with params processes those, whatever its data interval),
    then param `day`, then the run's data interval; None when there is none of these.
    """
    for first, last in PARAM_RANGES:
        if params.get(first) and params.get(last):
            try:
                return Interval(dt.date.fromisoformat(params[first]), dt.date.fromisoformat(params[last])).key
            except ValueError:  # the task itself fails on these and says why
                return f"{params[first]}..{params[last]}"
    if params.get("day"):
        return str(params["day"])
    if start is None or end is None:
        return None
    try:
        return Interval.from_datetimes(start, end).key
    except ValueError:  # not whole days (e.g. a manual run of an unscheduled DAG): its first day
        return start.date().isoformat()


def try_text(try_number: int, max_tries: int, exception: BaseException | None) -> str:
    """`2 of 3`, or for a failure that is never retried `1, not retried: ...` (never `1 of 3`)."""
    from airflow.sdk.exceptions import AirflowFailException

    from mlops.airflow.operators.base import ChecksFailed

    if isinstance(exception, ChecksFailed):
        return f"{try_number}, not retried: a failed check fails at once (the data will not change by retrying)"
    if isinstance(exception, AirflowFailException):
        return f"{try_number}, not retried: this failure does not go away by retrying"
    return f"{try_number} of {max_tries + 1}"


def mail_facts(context: dict[str, Any]) -> dict[str, Any]:
    """What the mail templates show beyond Airflow's context: `interval`, `try`, `headline`, `links`, `details`.

    `links` is a list of (label, URL) pairs; `headline` is e.g. "3 of 161 checks failed" or "".
    """
    ti = context["ti"]
    exception = context.get("exception")
    links = list(getattr(exception, "links", {}).items())
    text = str(exception) if exception is not None else ""
    details = "\n".join(
        line for line in text.splitlines() if not any(line.startswith(f"{label}: ") for label, _ in links)
    )
    return {
        "interval": processed_interval(
            context.get("params") or {}, context.get("data_interval_start"), context.get("data_interval_end")
        ),
        "try": try_text(ti.try_number, ti.max_tries, exception),
        "headline": getattr(exception, "headline", ""),
        "links": links,
        "details": details,
    }


class FailureMailNotifier(SmtpNotifier):
    """An SmtpNotifier whose mail has a plain-text and an HTML part, rendered on a copy, with a sender.

    BaseNotifier renders its template fields in place, so a notifier object that is called twice
    in one process (retries, or `dag.test()` runs of several intervals) would resend the first
    rendering: the wrong interval in the subject. `text_content` is the plain-text template.

    The sender is the SMTP connection's `from_email`; without one, `fallback_from` (the pipeline's
    `alerts.from_email`), then Airflow's `[email] from_email`. SmtpNotifier alone sends nothing
    when the connection has no sender.
    """

    template_fields = (*SmtpNotifier.template_fields, "text_content")

    def __init__(self, *, text_content: str = "", fallback_from: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text_content = text_content
        self.fallback_from = fallback_from

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and "ti" in args[0]:  # a task's context
            args[0]["mail"] = mail_facts(args[0])
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

    @cached_property
    def hook(self) -> SmtpHook:
        return _TextAndHtmlHook(self, smtp_conn_id=self.smtp_conn_id, auth_type=self.auth_type)


class _TextAndHtmlHook(SmtpHook):
    """SmtpHook whose message body is multipart/alternative: the notifier's rendered text, then the HTML."""

    def __init__(self, notifier: FailureMailNotifier, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.notifier = notifier

    def _build_mime_message(self, *args: Any, **kwargs: Any) -> tuple[MIMEMultipart, list[str]]:
        message, recipients = super()._build_mime_message(*args, **kwargs)
        parts = message.get_payload()
        html = next(p for p in parts if p.get_content_type() == "text/html")
        body = MIMEMultipart("alternative")
        body.attach(MIMEText(self.notifier.text_content, "plain", kwargs.get("mime_charset", "utf-8")))
        body.attach(html)
        parts[parts.index(html)] = body
        return message, recipients
