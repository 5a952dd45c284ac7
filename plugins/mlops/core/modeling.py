"""The scikit-learn model: model input, estimator construction, metrics. No I/O."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from mlops.core.config import Features, Model


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


def predict_scores(model: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """Positive-class probabilities."""
    return model.predict_proba(X)[:, 1]
