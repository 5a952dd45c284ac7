"""Airflow plugin of the mlops package: its operator extra links and its timetable."""

from airflow.plugins_manager import AirflowPlugin

from mlops.airflow.links import MlflowRunLink, PromotionReportLink
from mlops.airflow.timetables import EndingCronDataIntervalTimetable


class MlopsPlugin(AirflowPlugin):
    name = "mlops"
    operator_extra_links = [MlflowRunLink(), PromotionReportLink()]  # noqa: RUF012 (AirflowPlugin's own attribute)
    timetables = [EndingCronDataIntervalTimetable]  # noqa: RUF012
