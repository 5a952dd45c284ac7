"""Pipeline config: the real file loads; an invalid file fails with a ConfigError naming the file and the key."""

from __future__ import annotations

import copy

import pytest
import yaml

from mlops.core.config import REPO_ROOT, ConfigError, load_all, load_config, load_pipeline

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
    assert cfg.training.window_days == 35 and cfg.training.model.kind == "hist_gradient_boosting"
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
