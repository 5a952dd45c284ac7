"""The year report's summary of the retrains' feature audits (`reporting.replay.audit_over_retrains`)."""

from __future__ import annotations

import itertools
import random
import statistics

from mlops.reporting.replay import VERDICTS, audit_over_retrains


def _audit(verdicts: dict[str, str], seconds: float, fit: float, rows: int, pairs=()) -> dict:
    return {
        "verdicts": verdicts,
        "flagged": [f for f, v in verdicts.items() if v == "flagged"],
        "lofo_tested": [f for f, v in verdicts.items() if v in ("flagged", "lofo_contributes")],
        "permutation_rows": rows,
        "fit_seconds": fit,
        "audit_seconds": seconds,
        "budget_seconds": 2 * fit,
        "pairs": [list(p) for p in pairs],
    }


def test_verdicts_are_counted_per_feature_against_a_brute_force_tally():
    rng = random.Random(3)
    features = ["minute", "dest_region", "wind_dir", "carrier", "hour"]
    audits = [
        _audit(
            {f: rng.choice(VERDICTS) for f in features},
            seconds=rng.uniform(0.5, 5),
            fit=rng.uniform(0.4, 3),
            rows=rng.choice([200, 640, 1000]),
            pairs=[("wind_speed", "wind_gust")] if rng.random() < 0.5 else [],
        )
        for _ in range(40)
    ]
    audits.append({"error": "LookupError: model 'flights' has no version 9"})
    out = audit_over_retrains(audits)
    good = audits[:-1]
    assert out["audits"] == 40 and out["errors"] == 1
    by = {f["feature"]: f for f in out["features"]}
    for feature, verdict in itertools.product(features, VERDICTS):
        assert by[feature][verdict] == sum(a["verdicts"][feature] == verdict for a in good)
    for f in out["features"]:
        assert f["tested"] == f["flagged"] + f["lofo_contributes"]
    # the most flagged first
    assert [f["flagged"] for f in out["features"]] == sorted((f["flagged"] for f in out["features"]), reverse=True)
    ratios = [a["audit_seconds"] / a["fit_seconds"] for a in good]
    assert out["time_ratio_median"] == statistics.median(ratios) and out["time_ratio_max"] == max(ratios)
    assert out["over_budget"] == sum(a["audit_seconds"] > a["budget_seconds"] for a in good)
    assert out["permutation_rows_min"] == min(a["permutation_rows"] for a in good)
    assert out["pairs"] == [["wind_gust", "wind_speed", sum(bool(a["pairs"]) for a in good)]]


def test_no_audit_gives_an_empty_summary():
    out = audit_over_retrains([])
    assert out["audits"] == 0 and out["features"] == [] and out["time_ratio_median"] is None
