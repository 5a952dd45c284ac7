"""Reference profiles and shift statistics, on real flights and seeded samples, against scipy and brute force."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp, wasserstein_distance

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
    # an empty bin is floored at EPS and both sides renormalised, not log(0)
    e = np.array([0.5, 0.5, drift.EPS]) / (1 + drift.EPS)
    a = np.array([0.4, 0.4, 0.2])
    assert drift.psi([0.5, 0.5, 0.0], a) == pytest.approx(np.sum((a - e) * np.log(a / e)), rel=1e-12)
    assert drift.psi([2, 2, 0], [4, 4, 2]) == drift.psi([0.5, 0.5, 0.0], a)  # counts or shares


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
    x = {"edges": [1.0, 2.0], "fractions": [0.25, 0.25, 0.5, 0.0], "values": [], "counts": []}
    reference = {"rows": 4, "numeric": {"x": x}, "categorical": {}}
    # 1.0 belongs to [1, 2) and 2.0 to [2, inf): the actual fractions are [0, 0.5, 0.5, 0]
    actual = pd.DataFrame({"x": [1.0, 1.0, 2.0, 2.0]})
    assert drift.feature_psi(reference, actual)["x"] == pytest.approx(
        drift.psi([0.25, 0.25, 0.5, 0.0], [0, 0.5, 0.5, 0])
    )


def test_unseen_categories_are_counted_apart_from_psi(january):
    reference = drift.profile(january, ["dest"], [])
    ref_fractions = reference["categorical"]["dest"]["fractions"]
    assert drift.OTHER not in ref_fractions
    actual = january.copy()
    rows = actual.index[::3]  # a third of the flights go somewhere never seen
    actual.loc[rows[: len(rows) // 2], "dest"] = "ZZZ"
    actual.loc[rows[len(rows) // 2 :], "dest"] = "YYY"

    known = actual["dest"][actual["dest"].isin(list(ref_fractions))].value_counts(normalize=True)
    by_hand = drift.psi(list(ref_fractions.values()), [known.get(b, 0.0) for b in ref_fractions])
    stats = drift.compare(reference, actual)["dest"]
    assert stats["psi"] == pytest.approx(by_hand)  # the seen rows only: unseen ones are not counted twice
    assert stats["psi"] < 0.05  # the seen rows keep their mix, up to the noise of leaving a third out
    assert stats["unseen_share"] == len(rows) / len(actual)


def test_missing_values_are_counted(january):
    assert january["wind_gust"].isna().any() and january["tailnum"].isna().any()
    reference = drift.profile(january, ["tailnum"], ["wind_gust"])
    assert reference["numeric"]["wind_gust"]["fractions"][-1] == pytest.approx(january["wind_gust"].isna().mean())
    assert reference["categorical"]["tailnum"]["fractions"][drift.MISSING] == pytest.approx(
        january["tailnum"].isna().mean()
    )


def test_more_missing_values_raise_psi_or_the_unseen_share(january):
    """Missing numbers are a bin of PSI; a category missing where the reference never was is unseen."""
    reference = drift.profile(january, ["carrier"], ["temp"])
    assert january["temp"].isna().mean() < 0.05 and not january["carrier"].isna().any()
    actual = january.copy()
    actual.loc[actual.index[::2], "temp"] = np.nan
    actual.loc[actual.index[::2], "carrier"] = None
    stats = drift.compare(reference, actual)
    assert stats["temp"]["psi"] > 0.25
    assert stats["carrier"]["unseen_share"] == len(actual.index[::2]) / len(actual) and stats["carrier"]["psi"] < 0.01


def test_feature_psi_skips_absent_columns(january):
    reference = drift.profile(january, ["dest"], ["temp"])
    assert drift.feature_psi(reference, january[["temp"]]) == {"temp": pytest.approx(0.0, abs=1e-12)}


def test_unseen_share_is_an_exact_count():
    """18 of 900 rows unseen is 2%, exactly: a strict `> 0.02` limit does not fire on float noise."""
    reference = drift.profile(pd.DataFrame({"c": ["a", "b"] * 50}), ["c"], [])
    day = pd.DataFrame({"c": ["a"] * 441 + ["b"] * 441 + ["zz"] * 18})
    assert drift.compare(reference, day)["c"]["unseen_share"] == 0.02
    assert 1 - (882 / 900) > 0.02  # what the old `1 - sum(known)` gave
    nothing_known = drift.compare(reference, pd.DataFrame({"c": ["zz"] * 5}))["c"]
    assert nothing_known["unseen_share"] == 1.0 and np.isnan(nothing_known["psi"])


# exact KS and Wasserstein


@pytest.mark.parametrize("feature", ["plane_engines", "distance", "temp", "hour", "plane_seats", "pressure"])
def test_ks_and_wasserstein_are_exact(flights_cfg, january, july, feature):
    """Against scipy on the raw values, with discrete features (ties) and missing values."""
    reference = drift.profile(january, [], [feature])
    assert reference["numeric"][feature]["exact"]
    stats = drift.compare(reference, july)[feature]
    ref = january[feature].dropna().to_numpy(dtype="float64")
    cur = july[feature].dropna().to_numpy(dtype="float64")
    assert stats["ks"] == pytest.approx(ks_2samp(ref, cur).statistic, abs=1e-12)
    # the standard deviation of the equal-weight mixture of the two samples
    mixture_sd = np.sqrt((ref.var() + cur.var()) / 2 + (ref.mean() - cur.mean()) ** 2 / 4)
    assert stats["wasserstein"] == pytest.approx(wasserstein_distance(ref, cur) / mixture_sd, rel=1e-9)


def test_wasserstein_has_a_scale_that_cannot_blow_up():
    """Near-constant (std 7e-15) or constant references: finite, at most 2, unit-free."""
    near = pd.DataFrame({"x": np.full(22, 16.11092)})
    assert 0 < near["x"].to_numpy().std() < 1e-13
    reference = drift.profile(near, [], ["x"])
    same = drift.compare(reference, near)["x"]
    assert same["wasserstein"] == 0.0 and same["ks"] == 0.0
    moved = drift.compare(reference, pd.DataFrame({"x": [16.11092] * 20 + [17.0, 18.0]}))["x"]
    assert 0 < moved["wasserstein"] <= 2
    constant = drift.profile(pd.DataFrame({"x": [0.0] * 10}), [], ["x"])
    shifted = drift.compare(constant, pd.DataFrame({"x": [5.0] * 10}))["x"]
    assert shifted["wasserstein"] == 2.0 and shifted["ks"] == 1.0  # two point masses: the maximum
    rng = np.random.default_rng(4)
    for _ in range(20):
        a, b = rng.gamma(rng.uniform(0.1, 3), size=50), rng.normal(rng.uniform(-5, 5), rng.uniform(0.01, 3), 40)
        value = drift.compare(drift.profile(pd.DataFrame({"x": a}), [], ["x"]), pd.DataFrame({"x": b}))["x"]
        assert 0 <= value["wasserstein"] <= 2
        scaled = drift.compare(drift.profile(pd.DataFrame({"x": a * 1e6}), [], ["x"]), pd.DataFrame({"x": b * 1e6}))
        assert scaled["x"]["wasserstein"] == pytest.approx(value["wasserstein"], rel=1e-9)


def test_a_small_shift_reads_as_reference_standard_deviations():
    rng = np.random.default_rng(0)
    reference = drift.profile(pd.DataFrame({"x": rng.normal(0, 1, 20_000)}), [], ["x"])
    assert not reference["numeric"]["x"]["exact"]  # 20,000 distinct values: a sketch of 5,000
    moved = drift.compare(reference, pd.DataFrame({"x": rng.normal(0.2, 1, 20_000)}))["x"]
    assert moved["wasserstein"] == pytest.approx(0.2, abs=0.02)


def test_bin_edges_are_data_values(january):
    """Deciles of distance are values flights have, so a flight of exactly an edge falls in the bin it opens."""
    reference = drift.profile(january, [], ["distance"])
    edges = reference["numeric"]["distance"]["edges"]
    assert set(edges) <= set(january["distance"].astype("float64"))
    edge = edges[3]
    fractions = drift._numeric_fractions(np.array([edge]), edges)
    assert fractions[4] == 1.0  # [e3, e4)


# the null distribution at the day's sample size


def test_psi_of_samples_of_the_reference_itself_is_noise_at_that_size(january):
    """900-row samples of the reference: mean PSI of dest above 0.1 (87 categories); flagged rarely against the null.

    PSI is a symmetrised Kullback-Leibler divergence: between two samples of one distribution its mean
    is about (K - 1)(1/n + 1/m) (the chi-square approximation), which the null distribution shows.
    """
    reference = drift.profile(january, ["dest"], ["distance"])
    categories = len(reference["categorical"]["dest"]["fractions"])
    rng = np.random.default_rng(1)
    values, flagged = [], 0
    for _ in range(30):
        sample = january.iloc[rng.choice(len(january), 900)]  # drawn from the reference itself
        value = drift.compare(reference, sample)["dest"]["psi"]
        null = drift.null_distribution(reference, sample, 0.99, 200)["dest"]["psi"]
        values.append(value)
        flagged += value > null["quantile"]
    expected = (categories - 1) * (1 / 900 + 1 / len(january))
    assert np.mean(values) > 0.1 and np.mean(np.array(values) > 0.1) > 0.5  # a fixed 0.1 warns on most samples
    assert null["mean"] == pytest.approx(expected, rel=0.35)  # the chi-square approximation of PSI's null mean
    assert flagged <= 3  # about 1% expected; samples without replacement vary less than the null's
    # a real shift is flagged: a third of the rows moved to one destination
    moved = january.copy()
    moved.loc[moved.index[::3], "dest"] = "ATL"
    sample = moved.iloc[rng.choice(len(moved), 900, replace=False)]
    assert (
        drift.compare(reference, sample)["dest"]["psi"]
        > drift.null_distribution(reference, sample, 0.99)["dest"]["psi"]["quantile"]
    )


def test_null_distribution_is_seeded_and_covers_every_statistic(january, july):
    reference = drift.profile(january, ["carrier"], ["distance", "temp"])
    a = drift.null_distribution(reference, july, 0.99, 100)
    assert a == drift.null_distribution(reference, july, 0.99, 100)
    assert set(a["distance"]) == {"psi", "ks", "wasserstein"} and set(a["carrier"]) == {"psi", "js_distance"}
    for by_metric in a.values():
        for null in by_metric.values():
            assert 0 <= null["mean"] <= null["quantile"]
    assert drift.compare(reference, july)["temp"]["ks"] > a["temp"]["ks"]["quantile"]  # winter vs summer
