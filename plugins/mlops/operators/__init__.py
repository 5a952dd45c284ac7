"""One Airflow operator per stage. Light at import: stage code is imported inside `execute`."""

from mlops.operators.data import (
    IngestOperator,
    MonitorOperator,
    RescoreOperator,
    ScoreOperator,
    ValidateOperator,
)
from mlops.operators.model import (
    AssembleTrainingWindowOperator,
    EvaluateOperator,
    PromoteOperator,
    RecalibrateOperator,
    RollbackOperator,
    TrainOperator,
)

__all__ = [
    "AssembleTrainingWindowOperator",
    "EvaluateOperator",
    "IngestOperator",
    "MonitorOperator",
    "PromoteOperator",
    "RecalibrateOperator",
    "RescoreOperator",
    "RollbackOperator",
    "ScoreOperator",
    "TrainOperator",
    "ValidateOperator",
]
