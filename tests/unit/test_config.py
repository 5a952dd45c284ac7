"""Pipeline config: the real file loads; an invalid file fails with a ConfigError naming the file and the key."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from mlops.core.config import REPO_ROOT, ConfigError, load_all, load_config, load_each, load_pipeline

FLIGHTS_YAML = REPO_ROOT / "config" / "pipelines" / "flights.yaml"


@pytest.fixture(scope="module")
def raw():
    """The real flights config as a plain mapping (to mutate into broken variants)."""
    return yaml.safe_load(FLIGHTS_YAML.read_text())


def write(tmp_path, data, name="pipeline.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_real_flights_config_loads():
    cfg = load_config(FLIGHTS_YAML)
    assert cfg.name == "flights"
    assert cfg.target.column == "arr_delay" and cfg.target.operator == ">" and cfg.target.value == 15
    assert cfg.features.categorical == ["carrier", "origin", "dest", "dest_region", "hour_band"]
    assert "temp" in cfg.features.numeric and len(cfg.features.numeric) == 16
    assert {"carrier", "origin", "hour_band", "dest_region"} <= set(cfg.slices)
    assert set(cfg.slice_columns) <= set(cfg.features.all) | set(cfg.derived)
    assert cfg.training.window_days == 182 and cfg.training.model.kind == "hist_gradient_boosting"
    assert [j.table for j in cfg.joins] == ["weather", "planes", "airports"]
    assert cfg.joins[2].left_keys == ["dest"] and cfg.joins[2].right_keys == ["faa"]
    assert cfg.validation.ranges["temp"] == (-20, 115)
    assert any(g.metric in ("brier", "log_loss", "ece") for g in cfg.promotion.gates)  # a calibration gate
    assert cfg.scoring.predicted_positive_rate == (0.02, 0.9)


def test_real_config_has_no_leakage_feature():
    cfg = load_config(FLIGHTS_YAML)
    assert set(cfg.features.all).isdisjoint(cfg.features.leakage)
    assert cfg.target.column in cfg.features.leakage


def test_shift_limits_apply_per_feature_overrides():
    v = load_config(FLIGHTS_YAML).validation
    assert (v.skew.limit("distance", "psi").warn, v.skew.limit("distance", "psi").error) == (0.1, 0.25)
    # record-only features are measured but never flagged
    assert (v.skew.limit("temp", "psi").warn, v.skew.limit("temp", "psi").error) == (None, None)
    # an override replaces only the fields it sets: dest keeps the default warn, gets its own error
    assert (v.skew.limit("dest", "unseen_share").warn, v.skew.limit("dest", "unseen_share").error) == (0.02, 0.2)
    assert v.skew.limit("distance", "ks").error is None
    assert v.drift.limit("temp", "psi").warn is None and v.drift.limit("distance", "psi").warn == 0.25
    assert "day_of_week" in v.drift.exclude and "day_of_week" in v.skew.exclude


def test_load_pipeline_and_load_all_find_flights(tmp_path, raw):
    assert load_pipeline("flights").name == "flights"
    other = copy.deepcopy(raw)
    other["name"] = "another"
    write(tmp_path, raw, "b_flights.yaml")
    write(tmp_path, other, "a_another.yaml")
    assert [c.name for c in load_all(tmp_path)] == ["another", "flights"]
    with pytest.raises(ConfigError, match="no pipeline named 'nope'"):
        load_pipeline("nope", tmp_path)


def test_digest_is_stable_and_tracks_content(tmp_path, raw):
    original = load_config(FLIGHTS_YAML)
    copied = load_config(write(tmp_path, raw))  # same content, another file
    assert original.digest == copied.digest == load_config(FLIGHTS_YAML).digest
    changed = original.model_copy(update={"threshold": original.threshold.model_copy(update={"min_precision": 0.7})})
    assert changed.digest != original.digest


def _set(path, value):
    def mutate(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _delete(key):
    def mutate(data):
        del data[key]

    return mutate


def _append_numeric(column):
    def mutate(data):
        data["features"]["numeric"].append(column)

    return mutate


INVALID = {
    "window_days_too_small": (_set(["training", "window_days"], 2), ["training.window_days", "greater than or equal"]),
    "no_room_to_train": (
        _set(["training"], {"window_days": 10, "calibration_days": 5, "evaluation_days": 5}),
        ["training", "calibration_days + evaluation_days"],
    ),
    "leakage_as_feature": (_append_numeric("dep_delay"), ["features", "dep_delay", "leakage"]),
    "unknown_top_key": (_set(["schedule"], {"daily": "@daily"}), ["schedule", "Extra inputs are not permitted"]),
    "unknown_nested_key": (
        _set(["validation", "drift", "psi_fail"], 0.3),
        ["validation.drift.psi_fail", "Extra inputs are not permitted"],
    ),
    "unknown_shift_metric": (
        _set(["validation", "skew", "limits", "chi2"], {"warn": 0.1}),
        ["validation.skew.limits.chi2"],
    ),
    "gate_without_check": (_set(["promotion", "gates"], [{"metric": "roc_auc"}]), ["promotion.gates.0"]),
    "derived_with_two_kinds": (
        _set(["derived", "hour_band", "weekday"], {"column": "flight_date"}),
        ["derived.hour_band", "exactly one of bins, map, weekday", "bins", "weekday"],
    ),
    "derived_with_no_kind": (_set(["derived", "hour_band"], {}), ["derived.hour_band", "got none"]),
    "bins_labels_mismatch": (
        _set(["derived", "hour_band", "bins", "labels"], ["morning", "evening"]),
        ["derived.hour_band.bins", "one label per interval"],
    ),
    "slice_unknown_column": (_set(["slices"], ["carrier", "tailnum"]), ["slices", "'tailnum'"]),
    "slice_cross_unknown_column": (_set(["slices"], ["origin x wind"]), ["slices", "'wind'"]),
    "bad_operator": (_set(["target", "operator"], "=="), ["target.operator"]),
    "bad_name": (_set(["name"], "Flights-1"), ["name", "pattern"]),
    "missing_row_key": (_delete("row_key"), ["row_key", "Field required"]),
    "join_without_keys": (_set(["joins", 0, "keys"], None), ["joins.0", "'keys'"]),
    "min_precision_zero": (_set(["threshold", "min_precision"], 0), ["threshold.min_precision"]),
    "unknown_model_kind": (_set(["training", "model", "kind"], "xgboost"), ["training.model.kind"]),
    "end_before_start": (_set(["schedules", "end_date"], "2012-12-31"), ["schedules", "'end_date' must not be"]),
    # bounds in the wrong order: nothing could ever pass, or everything alerts
    "range_reversed": (_set(["validation", "ranges", "hour"], [23, 0]), ["validation", "'hour': [23.0, 0.0]", "low"]),
    "min_rows_above_max_rows": (_set(["validation", "min_rows"], 1500), ["validation", "min_rows 1500", "max_rows"]),
    "positive_rate_reversed": (
        _set(["scoring", "predicted_positive_rate"], [0.9, 0.02]),
        ["scoring", "predicted_positive_rate [0.9"],
    ),
    "positive_rate_not_a_share": (
        _set(["scoring", "predicted_positive_rate"], [0.1, 5]),
        ["scoring", "0 <= low <= high <= 1"],
    ),
    "score_psi_warn_above_error": (_set(["scoring", "score_psi_warn"], 2.0), ["scoring", "score_psi_warn 2.0"]),
    "shift_warn_above_error": (
        _set(["validation", "skew", "limits", "psi"], {"warn": 0.5, "error": 0.25}),
        ["validation.skew.limits.psi", "warn 0.5 is above error 0.25"],
    ),
    "gate_min_above_max": (
        _set(["promotion", "gates"], [{"metric": "brier", "min_value": 0.3, "max_value": 0.2}]),
        ["promotion.gates.0", "min_value 0.3 is above max_value 0.2"],
    ),
    # schedules Airflow would refuse (AirflowTimetableInvalid) or that break every run
    "daily_cron_not_at_midnight": (
        _set(["schedules", "daily"], "30 2 * * *"),
        ["schedules", "daily: '30 2 * * *'", "midnight"],
    ),
    "retrain_cron_hourly": (_set(["schedules", "retrain"], "0 * * * 1"), ["schedules", "retrain:", "midnight"]),
    "cron_not_cron": (_set(["schedules", "daily"], "every day"), ["schedules", "daily: 'every day'", "not a valid"]),
    "cron_with_seconds": (_set(["schedules", "daily"], "0 0 * * * 30"), ["schedules", "daily", "6 fields"]),
    # names that need no data: the shift checks' features must be features
    "drift_excludes_unknown_feature": (
        _set(["validation", "drift", "exclude"], ["day_of_weak"]),
        ["validation.drift.exclude", "'day_of_weak'", "not features"],
    ),
    "skew_override_unknown_feature": (
        _set(["validation", "skew", "features"], {"destination": {"psi": {"warn": 0.1}}}),
        ["validation.skew.features", "'destination'"],
    ),
    "unknown_threshold_policy": (_set(["threshold", "policy"], "max_accuracy"), ["threshold.policy"]),
    "gate_on_prevalence": (
        _set(["promotion", "gates"], [{"metric": "prevalence", "max_regression": 0.01}]),
        ["promotion.gates.0", "'prevalence'", "same for every model on the same rows"],
    ),
    "gate_on_renamed_positive_rate": (
        _set(["promotion", "gates"], [{"metric": "positive_rate", "min_value": 0.1}]),
        ["promotion.gates.0", "'positive_rate' was renamed 'prevalence'", "'predicted_positive_rate'"],
    ),
    "comparison_without_direction": (
        _set(["promotion", "gates"], [{"metric": "predicted_positive_rate", "max_regression": 0.01}]),
        ["promotion.gates.0", "neither better higher nor lower"],
    ),
    "renamed_scoring_positive_rate": (
        _set(["scoring", "positive_rate"], [0.02, 0.9]),
        ["scoring", "'positive_rate' was renamed 'predicted_positive_rate'"],
    ),
    "null_quantile_of_one": (_set(["validation", "skew", "null_quantile"], 1.0), ["validation.skew.null_quantile"]),
    "unknown_inconclusive_rule": (_set(["promotion", "inconclusive"], "retry"), ["promotion.inconclusive"]),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_config_names_file_and_key(tmp_path, raw, case):
    mutate, expected = INVALID[case]
    data = copy.deepcopy(raw)
    mutate(data)
    path = write(tmp_path, data, f"{case}.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid pipeline config:"), message
    for text in expected:
        assert text in message, (text, message)


def test_cross_slices_name_both_columns(tmp_path, raw):
    data = copy.deepcopy(raw)
    data["slices"] = ["carrier", "origin x hour_band", "carrier x origin"]
    cfg = load_config(write(tmp_path, data))
    assert cfg.slice_columns == ["carrier", "origin", "hour_band"]


def test_unmodified_copy_is_valid(tmp_path, raw):
    """The invalid cases above differ from a valid file only by their mutation."""
    assert load_config(write(tmp_path, copy.deepcopy(raw))).name == "flights"


def test_not_yaml_text(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: flights\nsource: [unclosed\n  : :\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["- just\n- a list\n", "", "42\n"])
def test_yaml_that_is_not_a_mapping(tmp_path, text):
    path = tmp_path / "list.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="must be a mapping") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match="cannot read pipeline config") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_a_key_given_twice_is_refused_with_its_path_and_lines(tmp_path):
    """YAML keeps the last of two equal keys silently: a config with one is an error naming both lines."""
    text = FLIGHTS_YAML.read_text()
    text = text.replace("  max_rows: 1200\n", "  max_rows: 1200\n  min_rows: 900\n", 1)
    text = text.replace("threshold:\n", "threshold:\n  policy: max_fbeta\n", 1)
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid pipeline config:"), message
    lines = text.splitlines()
    first, second = (i + 1 for i, line in enumerate(lines) if line.startswith("  min_rows: "))
    assert f"validation.min_rows: key given twice (lines {first} and {second})" in message
    assert "threshold.policy: key given twice" in message


def test_anchors_and_merge_keys_are_not_duplicates(tmp_path, raw):
    text = FLIGHTS_YAML.read_text().replace("alerts:\n", "alerts: &alerts\n", 1)
    text += "x_unused: {<<: *alerts, retries: 5}\n"  # a merge that overrides a merged key is legal YAML
    path = tmp_path / "merge.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:  # refused for the unknown key, not as a duplicate
        load_config(path)
    assert "x_unused" in str(info.value) and "given twice" not in str(info.value)


def test_every_threshold_policy_and_model_kind_is_in_the_config_model():
    from typing import get_args

    from mlops.core.config import MODEL_KINDS, THRESHOLD_POLICIES, Model, ModelKind, Threshold, ThresholdPolicy

    assert get_args(ThresholdPolicy) == THRESHOLD_POLICIES and "min_expected_cost" in THRESHOLD_POLICIES
    assert get_args(ModelKind) == MODEL_KINDS
    for policy in THRESHOLD_POLICIES:
        assert Threshold(policy=policy).policy == policy
    for kind in MODEL_KINDS:
        assert Model(kind=kind).kind == kind


def test_one_broken_file_does_not_stop_loading_another_pipeline(tmp_path, raw):
    """Tasks load their own pipeline by name: a sibling's typo must not fail them."""
    write(tmp_path, raw, "flights.yaml")
    broken = copy.deepcopy(raw)
    broken["name"] = "other"
    broken["featurez"] = broken.pop("features")
    write(tmp_path, broken, "other.yaml")
    assert load_pipeline("flights", tmp_path).name == "flights"
    with pytest.raises(ConfigError, match=r"other\.yaml: invalid pipeline config: .*featurez"):
        load_pipeline("other", tmp_path)
    moved = copy.deepcopy(raw)
    moved["name"] = "moved"
    write(tmp_path, moved, "renamed_file.yaml")  # a pipeline whose file is named otherwise is found too
    assert load_pipeline("moved", tmp_path).name == "moved"
    with pytest.raises(ConfigError, match=r"no pipeline named 'nope' .*1 invalid files: .*other\.yaml"):
        load_pipeline("nope", tmp_path)


def test_two_files_with_one_pipeline_name_are_both_refused(tmp_path, raw):
    write(tmp_path, raw, "a.yaml")
    write(tmp_path, raw, "b.yaml")
    configs, errors = load_each(tmp_path)
    assert configs == {}
    assert sorted(p.name for p in errors) == ["a.yaml", "b.yaml"]
    assert "name: 'flights' is also declared in" in str(errors[tmp_path / "a.yaml"])


SECRET = "hunter2-rotated"


def _with_urls(raw, password: str):
    data = copy.deepcopy(raw)
    data["source"] = {
        "kind": "sql",
        "url": f"postgresql+psycopg2://reader:{password}@db.internal:5432/flights",
        "query": "SELECT * FROM flights WHERE d >= :start AND d < :end",
        "tables": {"weather": f"https://api.example.com/weather.csv?token={password}&v=1"},
        "date_column": "flight_date",
    }
    data["scoring"]["sink_url"] = f"postgresql://writer:{password}@db.internal/scores"
    return data


def test_logged_config_masks_every_password_and_token(tmp_path, raw):
    cfg = load_config(write(tmp_path, _with_urls(raw, SECRET)))
    dumped = json.dumps(cfg.masked_dump())
    assert SECRET not in dumped
    logged = cfg.masked_dump()
    assert logged["source"]["url"] == "postgresql+psycopg2://reader:***@db.internal:5432/flights"
    assert logged["scoring"]["sink_url"] == "postgresql://writer:***@db.internal/scores"
    assert logged["source"]["tables"]["weather"] == "https://api.example.com/weather.csv?token=***&v=1"
    assert logged["features"] == cfg.model_dump(mode="json")["features"]  # the rest as it is


def test_digest_follows_the_model_not_credentials_or_operations(tmp_path, raw):
    base = load_config(write(tmp_path, _with_urls(raw, "first"), "a.yaml"))
    rotated = load_config(write(tmp_path, _with_urls(raw, SECRET), "b.yaml"))
    assert rotated.digest == base.digest  # a new password is no new model
    operations = base.model_copy(
        update={
            "alerts": base.alerts.model_copy(update={"email": ["someone@example.com"], "retries": 5}),
            "scoring": base.scoring.model_copy(update={"batch_rows": 10, "predicted_positive_rate": (0.1, 0.2)}),
            "schedules": base.schedules.model_copy(update={"daily": "0 0 * * 1-5"}),
            "description": "reworded",
        }
    )
    assert operations.digest == base.digest
    data = _with_urls(raw, "first")
    data["source"]["url"] = "postgresql+psycopg2://reader:first@other-db.internal:5432/flights"
    assert load_config(write(tmp_path, data, "c.yaml")).digest != base.digest  # another database
    features = base.model_copy(update={"features": base.features.model_copy(update={"numeric": ["hour"]})})
    assert features.digest != base.digest


def test_source_descriptions_mask_the_same_secrets():
    """What ingestion writes in manifests, logs and errors (the source's description) hides them too."""
    from mlops.io.sources.http import mask_url as http_mask
    from mlops.io.sources.sql import mask_url as sql_mask

    assert http_mask("https://u:pw@h/{date}.csv?token=abc&d=1") == "https://u:***@h/{date}.csv?token=***&d=1"
    assert http_mask("https://h/{date}.csv?api_key=abc") == "https://h/{date}.csv?api_key=***"
    assert (
        sql_mask("postgresql+psycopg2://u:pw@h/db?sslpassword=zz") == "postgresql+psycopg2://u:***@h/db?sslpassword=***"
    )
