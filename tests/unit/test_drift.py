"""Reference profiles and PSI, on real flights and on seeded samples."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mlops.core import drift
from mlops.stages.ingest import build_day


@pytest.fixture(scope="module")
def january(flights_cfg):
    """Three real January days (about 2,700 flights)."""
    return pd.concat([build_day(flights_cfg, dt.date(2013, 1, d)) for d in (8, 9, 10)], ignore_index=True)


@pytest.fixture(scope="module")
def july(flights_cfg):
    return build_day(flights_cfg, dt.date(2013, 7, 10))


def test_psi_of_known_fractions():
    assert drift.psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    expected = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    assert drift.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected)
    assert drift.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(drift.psi([0.25, 0.75], [0.5, 0.5]))
    # an empty bin is clipped to EPS, not log(0)
    assert np.isfinite(drift.psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]))


def test_identical_distribution_has_zero_psi(flights_cfg, january):
    reference = drift.profile(january, flights_cfg.features.categorical, flights_cfg.features.numeric)
    values = drift.feature_psi(reference, january)
    assert set(values) == set(flights_cfg.features.all)
    assert max(values.values()) < 1e-9


def test_profile_fractions_sum_to_one(flights_cfg, january):
    reference = drift.profile(january, flights_cfg.features.categorical, flights_cfg.features.numeric)
    assert reference["rows"] == len(january)
    for col, spec in reference["numeric"].items():
        assert sum(spec["fractions"]) == pytest.approx(1.0), col
        assert len(spec["fractions"]) == len(spec["edges"]) + 2, col  # bins below, between, above, missing
        assert spec["edges"] == sorted(spec["edges"]), col
    for col, spec in reference["categorical"].items():
        assert sum(spec["fractions"].values()) == pytest.approx(1.0), col


def test_seeded_samples_same_versus_shifted():
    rng = np.random.default_rng(0)
    base = pd.DataFrame({"x": rng.normal(0, 1, 5000)})
    reference = drift.profile(base, [], ["x"])
    same = drift.feature_psi(reference, pd.DataFrame({"x": rng.normal(0, 1, 5000)}))["x"]
    shifted = drift.feature_psi(reference, pd.DataFrame({"x": rng.normal(1, 1, 5000)}))["x"]
    assert same < 0.02
    assert shifted > 0.25


def test_real_seasonal_shift_in_temperature(flights_cfg, january, july):
    reference = drift.profile(january, flights_cfg.features.categorical, flights_cfg.features.numeric)
    values = drift.feature_psi(reference, july)
    assert values["temp"] > 0.25  # winter versus summer
    assert values["distance"] < values["temp"]


def test_numeric_bins_are_left_closed():
    x = {"edges": [1.0, 2.0], "fractions": [0.25, 0.25, 0.5, 0.0], "quantiles": [], "std": None}
    reference = {"rows": 4, "numeric": {"x": x}, "categorical": {}}
    # 1.0 belongs to [1, 2) and 2.0 to [2, inf): the actual fractions are [0, 0.5, 0.5, 0]
    actual = pd.DataFrame({"x": [1.0, 1.0, 2.0, 2.0]})
    assert drift.feature_psi(reference, actual)["x"] == pytest.approx(
        drift.psi([0.25, 0.25, 0.5, 0.0], [0, 0.5, 0.5, 0])
    )


def test_unseen_categories_land_in_other(january):
    reference = drift.profile(january, ["dest"], [])
    ref_fractions = reference["categorical"]["dest"]["fractions"]
    assert drift.OTHER not in ref_fractions
    actual = january.copy()
    rows = actual.index[::3]  # a third of the flights go somewhere never seen
    actual.loc[rows[: len(rows) // 2], "dest"] = "ZZZ"
    actual.loc[rows[len(rows) // 2 :], "dest"] = "YYY"

    expected_bins = [*ref_fractions, drift.OTHER]
    counts = actual["dest"].where(actual["dest"].isin(list(ref_fractions)), drift.OTHER).value_counts(normalize=True)
    by_hand = drift.psi([ref_fractions.get(b, 0.0) for b in expected_bins], [counts.get(b, 0.0) for b in expected_bins])
    value = drift.feature_psi(reference, actual)["dest"]
    assert value == pytest.approx(by_hand)
    assert value > 0.25


def test_missing_values_are_counted(january):
    assert january["wind_gust"].isna().any() and january["tailnum"].isna().any()
    reference = drift.profile(january, ["tailnum"], ["wind_gust"])
    assert reference["numeric"]["wind_gust"]["fractions"][-1] == pytest.approx(january["wind_gust"].isna().mean())
    assert reference["categorical"]["tailnum"]["fractions"][drift.MISSING] == pytest.approx(
        january["tailnum"].isna().mean()
    )


def test_more_missing_values_raise_psi(january):
    reference = drift.profile(january, ["carrier"], ["temp"])
    assert january["temp"].isna().mean() < 0.05
    actual = january.copy()
    actual.loc[actual.index[::2], "temp"] = np.nan
    actual.loc[actual.index[::2], "carrier"] = None
    values = drift.feature_psi(reference, actual)
    assert values["temp"] > 0.25
    assert values["carrier"] > 0.25


def test_feature_psi_skips_absent_columns(january):
    reference = drift.profile(january, ["dest"], ["temp"])
    assert drift.feature_psi(reference, january[["temp"]]) == {"temp": pytest.approx(0.0, abs=1e-12)}
