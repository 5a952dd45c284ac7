"""The scikit-learn model: model input, estimator construction, metrics. No I/O."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from mlops.config import Features, Model


def model_input(df: pd.DataFrame, features: Features) -> pd.DataFrame:
    """The model's input frame: categoricals as text (missing as NaN), numbers as float64."""
    missing = [c for c in features.all if c not in df.columns]
    if missing:
        raise KeyError(f"model input lacks feature columns {missing}")
    out = pd.DataFrame(index=df.index)
    for col in features.categorical:
        out[col] = df[col].astype("object").where(df[col].notna(), np.nan)
    for col in features.numeric:
        out[col] = df[col].astype("float64")
    return out


def build_estimator(model: Model, features: Features) -> Pipeline:
    """An unfitted sklearn Pipeline of the configured kind."""
    cat, num = features.categorical, features.numeric
    if model.kind == "hist_gradient_boosting":
        encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan)
        pre = ColumnTransformer(
            [("categorical", encoder, cat), ("numeric", "passthrough", num)], verbose_feature_names_out=False
        ).set_output(transform="pandas")
        return Pipeline(
            [
                ("preprocess", pre),
                ("classifier", HistGradientBoostingClassifier(categorical_features=cat, **model.params)),
            ]
        )
    pre = ColumnTransformer(
        [
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore", min_frequency=20),
                ),
                cat,
            ),
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num),
        ]
    )
    return Pipeline([("preprocess", pre), ("classifier", LogisticRegression(max_iter=1000, **model.params))])


def binary_metrics(y: np.ndarray, score: np.ndarray, threshold: float | None) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision), and precision/recall at `threshold`; NaN where undefined."""
    y = np.asarray(y, dtype="int64")
    one_class = len(np.unique(y)) < 2
    out = {
        "roc_auc": float("nan") if one_class else float(roc_auc_score(y, score)),
        "pr_auc": float("nan") if one_class else float(average_precision_score(y, score)),
        "positive_rate": float(y.mean()) if len(y) else float("nan"),
    }
    if threshold is not None:
        predicted = (np.asarray(score) >= threshold).astype("int64")
        out["precision"] = float(precision_score(y, predicted, zero_division=np.nan))
        out["recall"] = float(recall_score(y, predicted, zero_division=np.nan))
    return out


def predict_scores(model: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """Positive-class probabilities."""
    return model.predict_proba(X)[:, 1]
