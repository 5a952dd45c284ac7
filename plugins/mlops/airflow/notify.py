"""Failure mail: Airflow's SmtpNotifier, rendered afresh for every failure."""

from __future__ import annotations

import copy

from airflow.providers.smtp.notifications.smtp import SmtpNotifier


class FailureMailNotifier(SmtpNotifier):
    """An SmtpNotifier that renders its templates on a copy.

    BaseNotifier renders its template fields in place, so a notifier object that is called twice
    in one process (retries, or `dag.test()` runs of several intervals) would resend the first
    rendering: the wrong interval in the subject.
    """

    def __call__(self, *args, **kwargs):
        return SmtpNotifier.__call__(copy.copy(self), *args, **kwargs)
