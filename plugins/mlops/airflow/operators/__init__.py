"""One Airflow operator per stage. Light at import: stage code is imported inside `execute`."""

from mlops.airflow.operators.data import (
    AlertsOperator,
    IngestOperator,
    MonitorOperator,
    OutcomesOperator,
    RescoreOperator,
    ScoreOperator,
    ValidateOperator,
)
from mlops.airflow.operators.model import (
    AssembleTrainingWindowOperator,
    EvaluateOperator,
    FeatureAuditOperator,
    PromoteOperator,
    RecalibrateOperator,
    RollbackOperator,
    TrainOperator,
)

__all__ = [
    "AlertsOperator",
    "AssembleTrainingWindowOperator",
    "EvaluateOperator",
    "FeatureAuditOperator",
    "IngestOperator",
    "MonitorOperator",
    "OutcomesOperator",
    "PromoteOperator",
    "RecalibrateOperator",
    "RescoreOperator",
    "RollbackOperator",
    "ScoreOperator",
    "TrainOperator",
    "ValidateOperator",
]
