"""Which model version serves which day: pure rules on dates and the config's schedules.

- A promoted version's *first day* is the end of its training window, or the day after the last day
  decided when it was promoted (scored, or validated against a champion's training data), whichever
  is later: days decided before keep the model that decided them.
- A scheduled retrain of the data interval [P, D) (the retrain cron fires at P and D) trains on a window
  that ends on D, so its version, promoted then, serves from D.
"""

from __future__ import annotations

import datetime as dt

from mlops.core.config import Schedules

ONE_DAY = dt.timedelta(days=1)


def first_served_day(window_end: dt.date | None, last_decided: dt.date | None) -> dt.date | None:
    """The later of `window_end` and the day after `last_decided`; None when both are None."""
    after_last = last_decided + ONE_DAY if last_decided is not None else None
    return max((d for d in (window_end, after_last) if d is not None), default=None)


def scheduled_retrain_starts(day: dt.date, schedules: Schedules) -> bool:
    """Whether a scheduled retrain's version starts serving on `day`.

    True when the retrain cron (`schedules.retrain`, firing at midnight) fires at the start of `day`
    and the interval it ends, [previous firing, `day`), is one the schedule runs: it starts on or after
    `schedules.start_date` and its last day is on or before `schedules.end_date` (when set).
    """
    from croniter import croniter

    midnight = dt.datetime.combine(day, dt.time())
    if not croniter.match(schedules.retrain, midnight):
        return False
    previous = croniter(schedules.retrain, midnight).get_prev(dt.datetime).date()
    if previous < schedules.start_date:
        return False
    return schedules.end_date is None or day - ONE_DAY <= schedules.end_date
