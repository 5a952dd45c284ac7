"""Airflow plugin of the mlops package: its operator extra links, its timetable and the pipeline page.

The pipeline page is a FastAPI app mounted in the api-server under `/mlops` (built on its first
request: importing this plugin stays cheap in every Airflow process) with a menu entry "MLOps
pipelines" that shows it inside the Airflow UI (`/plugin/mlops-pipelines`).
"""

from airflow.plugins_manager import AirflowPlugin

from mlops.airflow import pipeline_page
from mlops.airflow.links import MlflowRunLink, PromotionReportLink
from mlops.airflow.timetables import EndingCronDataIntervalTimetable


class MlopsPlugin(AirflowPlugin):
    name = "mlops"
    operator_extra_links = [MlflowRunLink(), PromotionReportLink()]  # noqa: RUF012 (AirflowPlugin's own attribute)
    timetables = [EndingCronDataIntervalTimetable]  # noqa: RUF012
    fastapi_apps = [  # noqa: RUF012
        {"app": pipeline_page.app, "url_prefix": pipeline_page.URL_PREFIX, "name": "MLOps pipeline page"}
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "MLOps pipelines",
            "href": f"{pipeline_page.URL_PREFIX}/",
            "destination": "nav",
            "url_route": "mlops-pipelines",
        }
    ]
