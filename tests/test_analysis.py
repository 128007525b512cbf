"""Pure analysis: results frames in, summaries, agreement, tests, verdicts and figures out."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from kserve_nb.analysis import RESULT_COLUMNS, SIDE_COLORS, Comparison, compare, results_frame
from kserve_nb.analysis.compare import bootstrap_median_diff
from kserve_nb.analysis.frames import check_results, empty_results, ok_mask, prediction_kind, to_label
from kserve_nb.errors import ValidationError

R1, R2 = "sklearn-iris-predictor-00001", "sklearn-iris-predictor-00002"


def rows(
    target: str,
    predictions: list[Any],
    *,
    revision: str | None = None,
    latency: float | list[float] = 10.0,
    errors: dict[int, str] | None = None,
    repeat: int = 0,
    start: int = 0,
) -> list[dict[str, Any]]:
    """Result rows for one target: row i predicted predictions[i] (None where errors has i)."""
    errors = errors or {}
    lat = latency if isinstance(latency, list) else [latency] * len(predictions)
    out = []
    for i, p in enumerate(predictions):
        err = errors.get(i)
        out.append(
            {
                "target": target,
                "revision": revision,
                "row": start + i,
                "repeat": repeat,
                "input": [float(i), 1.0, 2.0, 3.0],
                "prediction": None if err else p,
                "status_code": 500 if err else 200,
                "latency_ms": lat[i],
                "error": f"HTTP 500: {err}" if err else None,
            }
        )
    return out


def frame(*parts: list[dict[str, Any]]) -> pd.DataFrame:
    return results_frame([r for p in parts for r in p])


CLASSES = [0, 1, 2, 1, 0, 2, 1, 1, 0, 2]


# -- frames ----------------------------------------------------------------------------------


def test_results_frame_keeps_int_predictions_int_next_to_failures() -> None:
    df = frame(rows("latest", [2, 1], errors={1: "boom"}))
    assert list(df.columns) == list(RESULT_COLUMNS)
    assert df["prediction"].tolist() == [2, None]
    assert type(df["prediction"].iloc[0]) is int
    assert str(df["status_code"].dtype) == "Int64"


def test_empty_results_has_the_columns() -> None:
    df = empty_results()
    assert list(df.columns) == list(RESULT_COLUMNS) and len(df) == 0


def test_check_results_fills_optional_columns_and_rejects_foreign_frames() -> None:
    df = pd.DataFrame({"target": ["latest"], "row": [0], "prediction": [1], "latency_ms": [3.0], "extra": [1]})
    out = check_results(df)
    assert list(out.columns) == list(RESULT_COLUMNS) + ["extra"]
    assert out["repeat"].tolist() == [0] and out["error"].tolist() == [None]
    with pytest.raises(ValidationError, match="lacks column"):
        check_results(pd.DataFrame({"a": [1]}))
    with pytest.raises(ValidationError):
        check_results([1, 2])  # type: ignore[arg-type]


def test_ok_mask_uses_error_and_status() -> None:
    df = frame(rows("latest", [1, 2, 3], errors={2: "x"}))
    df.loc[1, "status_code"] = 503
    assert ok_mask(df).tolist() == [True, False, False]


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([0, 1, 2], "class"),
        (["setosa", "virginica"], "class"),
        ([True, False], "class"),
        ([0.5, 1.25], "numeric"),
        ([1, 2.5], "numeric"),
        ([[0.1, 0.9], [0.7, 0.3]], "vector"),
        ([[2], [1]], "class"),  # one-element lists are scalars
        ([[0.5], [1.5]], "numeric"),
        ([{"a": 1}], "class"),
        ([None, None], "empty"),
        ([], "empty"),
    ],
)
def test_prediction_kind(values: list[Any], kind: str) -> None:
    assert prediction_kind(values) == kind


@pytest.mark.parametrize(
    ("value", "kind", "label"),
    [
        ([0.1, 0.7, 0.2], "vector", 1),
        ([3], "class", 3),
        ({"b": 1, "a": 2}, "class", '{"a": 2, "b": 1}'),
        (None, "class", None),
    ],
)
def test_to_label(value: Any, kind: str, label: Any) -> None:
    assert to_label(value, kind) == label


# -- summary ---------------------------------------------------------------------------------


def test_summary_per_target_and_revision() -> None:
    df = frame(
        rows("latest", CLASSES, revision=R2, latency=[float(i) for i in range(1, 11)], errors={9: "boom"}),
        rows("prev", CLASSES, revision=R1, latency=5.0),
    )
    s = compare(df).summary.set_index("target")
    assert s.loc["latest", "n"] == 10 and s.loc["latest", "errors"] == 1
    assert s.loc["latest", "error_rate"] == pytest.approx(0.1)
    assert s.loc["latest", "p50_ms"] == pytest.approx(5.0)  # over the 9 successes 1..9
    assert s.loc["prev", "p95_ms"] == pytest.approx(5.0)
    assert s.loc["prev", "revision"] == R1
    assert s.loc["prev", "share 1"] == pytest.approx(0.4)
    assert {"share 0", "share 1", "share 2", "p99_ms", "mean_ms"} <= set(s.columns)


def test_summary_of_regression_has_mean_and_std() -> None:
    df = frame(rows("latest", [1.0, 2.0, 3.0]), rows("prev", [1.0, 2.0, 3.5]))
    cmp = compare(df)
    assert cmp.kind == "numeric"
    s = cmp.summary.set_index("target")
    assert s.loc["latest", "pred_mean"] == pytest.approx(2.0) and s.loc["latest", "pred_std"] == pytest.approx(1.0)
    assert "share 0" not in s.columns


def test_summary_with_many_classes_shows_the_top_class() -> None:
    preds = list(range(30)) + [7] * 5
    s = compare(frame(rows("latest", preds))).summary
    assert s.loc[0, "top class"] == 7 and s.loc[0, "classes"] == 30


def test_default_target_splits_into_revisions() -> None:
    df = frame(rows("default", [0] * 9, revision=R1), rows("default", [1], revision=R2, start=9))
    s = compare(df).summary
    assert s[["target", "revision", "n"]].values.tolist() == [["default", R1, 9], ["default", R2, 1]]


# -- agreement -------------------------------------------------------------------------------


def test_agreement_pairs_identical_inputs_and_builds_confusion() -> None:
    latest = list(CLASSES)
    latest[3] = 2  # prev 1 -> latest 2
    latest[8] = 1  # prev 0 -> latest 1
    cmp = compare(frame(rows("latest", latest, revision=R2), rows("prev", CLASSES, revision=R1)))
    ag = cmp.agreement
    assert ag.n_pairs == 10 and ag.rate == pytest.approx(0.8)
    assert ag.confusion is not None
    assert ag.confusion.loc[1, 2] == 1 and ag.confusion.loc[0, 1] == 1 and int(ag.confusion.to_numpy().sum()) == 10
    assert ag.confusion.index.name == "prev" and ag.confusion.columns.name == "latest"
    assert ag.rows["row"].head(2).tolist() == [3, 8]  # disagreements first
    assert list(ag.pairs.columns) == ["row", "repeat", "input", "prev", "latest", "agree", "abs_delta"]


def test_agreement_pairs_by_row_and_repeat() -> None:
    df = frame(
        rows("latest", [0, 1], repeat=0),
        rows("latest", [0, 2], repeat=1),
        rows("prev", [0, 1], repeat=0),
        rows("prev", [0, 1], repeat=1),
    )
    ag = compare(df).agreement
    assert ag.n_pairs == 4 and ag.rate == pytest.approx(0.75)
    by_row = ag.rows.set_index("row")
    assert by_row.loc[1, "agreement"] == pytest.approx(0.5) and by_row.loc[1, "n"] == 2


def test_agreement_skips_pairs_where_one_side_failed() -> None:
    df = frame(rows("latest", [0, 1, 2], errors={1: "x"}), rows("prev", [0, 1, 2]))
    ag = compare(df).agreement
    assert ag.n_pairs == 2 and ag.rate == 1.0


def test_agreement_of_probability_vectors_uses_argmax_and_mean_abs_delta() -> None:
    prev = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]
    latest = [[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]]
    cmp = compare(frame(rows("latest", latest), rows("prev", prev)))
    assert cmp.kind == "vector"
    assert cmp.agreement.rate == pytest.approx(2 / 3)
    assert cmp.agreement.mean_abs_delta == pytest.approx((0.1 + 0.1 + 0.2) / 3)
    assert cmp.agreement.confusion is not None and cmp.agreement.confusion.loc[0, 1] == 1


def test_agreement_of_numbers_uses_tolerance_and_delta() -> None:
    cmp = compare(frame(rows("latest", [1.0, 2.0000000001, 3.5]), rows("prev", [1.0, 2.0, 3.0])))
    ag = cmp.agreement
    assert ag.rate == pytest.approx(2 / 3)
    assert ag.mean_abs_delta == pytest.approx(0.5 / 3, rel=1e-6)
    assert ag.confusion is None


def test_agreement_with_one_side_only_is_empty() -> None:
    ag = compare(frame(rows("latest", CLASSES))).agreement
    assert ag.n_pairs == 0 and ag.rate is None and ag.confusion is None and ag.pairs.empty


def test_custom_side_names() -> None:
    df = frame(rows("blue", [0, 1]), rows("green", [0, 0]))
    ag = compare(df, baseline="blue", candidate="green").agreement
    assert ag.rate == 0.5 and list(ag.pairs.columns)[3:5] == ["blue", "green"]


# -- tests -----------------------------------------------------------------------------------


def _test(cmp: Comparison, prefix: str) -> pd.Series:
    t = cmp.tests
    return t[t["test"].str.startswith(prefix)].iloc[0]


def test_identical_class_distributions_do_not_shift() -> None:
    cmp = compare(frame(rows("latest", CLASSES * 10), rows("prev", CLASSES * 10)))
    t = _test(cmp, "prediction shift (chi-square)")
    assert t["p_value"] == pytest.approx(1.0) and t["effect"] == 0.0


def test_shifted_class_distribution_is_detected() -> None:
    cmp = compare(frame(rows("latest", [0] * 80 + [1] * 20), rows("prev", [0] * 20 + [1] * 80)))
    t = _test(cmp, "prediction shift")
    assert t["p_value"] < 1e-6 and t["effect"] == pytest.approx(0.6)
    assert "0" in t["detail"] and "20.0% → 80.0%" in t["detail"]


def test_single_class_everywhere_is_not_a_shift() -> None:
    t = _test(compare(frame(rows("latest", [1] * 5), rows("prev", [1] * 5))), "prediction shift")
    assert t["p_value"] == 1.0 and "only class 1" in t["detail"]


def test_numeric_shift_uses_ks() -> None:
    rng = np.random.default_rng(1)
    cmp = compare(frame(rows("latest", list(rng.normal(1, 1, 300))), rows("prev", list(rng.normal(0, 1, 300)))))
    t = _test(cmp, "prediction shift (KS)")
    assert t["p_value"] < 1e-6 and t["effect"] == pytest.approx(1.0, abs=0.25)


def test_latency_difference_with_bootstrap_interval() -> None:
    rng = np.random.default_rng(2)
    prev_lat = list(rng.normal(20, 2, 400))
    latest_lat = list(rng.normal(30, 2, 400))
    cmp = compare(frame(rows("latest", [0] * 400, latency=latest_lat), rows("prev", [0] * 400, latency=prev_lat)))
    t = _test(cmp, "latency difference")
    assert t["p_value"] < 1e-10
    assert t["ci_low"] < t["effect"] < t["ci_high"]
    assert t["ci_low"] > 8 and t["ci_high"] < 12
    assert "latest − prev" in t["detail"]


def test_latency_same_distribution_is_not_significant() -> None:
    rng = np.random.default_rng(3)
    a, b = list(rng.normal(20, 2, 300)), list(rng.normal(20, 2, 300))
    t = _test(compare(frame(rows("latest", [0] * 300, latency=a), rows("prev", [0] * 300, latency=b))), "latency")
    assert t["p_value"] > 0.01 and t["ci_low"] < 0 < t["ci_high"]


def test_bootstrap_is_seeded_and_handles_empty_input() -> None:
    a, b = np.arange(100.0), np.arange(100.0) + 5
    assert bootstrap_median_diff(a, b, seed=7) == bootstrap_median_diff(a, b, seed=7)
    assert all(math.isnan(v) for v in bootstrap_median_diff(np.array([]), b))


def test_tests_need_both_sides() -> None:
    cmp = compare(frame(rows("latest", CLASSES)))
    assert cmp.tests["p_value"].isna().all()
    assert cmp.tests["detail"].str.contains("both sides").all()


# -- split -----------------------------------------------------------------------------------


def _default_rows(n_r1: int, n_r2: int) -> list[dict[str, Any]]:
    return rows("default", [0] * n_r1, revision=R1) + rows("default", [0] * n_r2, revision=R2, start=n_r1)


def test_observed_split_matching_configuration_passes() -> None:
    df = frame(rows("latest", [0], revision=R2), rows("prev", [0], revision=R1), _default_rows(180, 20))
    cmp = compare(df, configured_split={"latest": 10, "prev": 90})
    sp = cmp.split.set_index("key")
    assert sp.loc["latest", "revision"] == R2 and sp.loc["latest", "observed_n"] == 20
    assert sp.loc["latest", "observed_pct"] == pytest.approx(10.0)
    assert sp.loc["latest", "p_value"] == pytest.approx(1.0)
    t = _test(cmp, "observed vs configured split")
    assert t["n"] == 200 and t["p_value"] > 0.5


def test_skewed_split_is_flagged_and_keys_may_be_revisions() -> None:
    df = frame(_default_rows(100, 100))
    cmp = compare(df, configured_split={R2: 10, R1: 90})
    t = _test(cmp, "observed vs configured split")
    assert t["p_value"] < 1e-10 and t["effect"] == pytest.approx(40.0)


def test_revision_answering_at_zero_percent_is_flagged() -> None:
    df = frame(rows("latest", [0], revision=R2), rows("prev", [0], revision=R1), _default_rows(95, 5))
    cmp = compare(df, configured_split={"latest": 0, "prev": 100})
    t = _test(cmp, "observed vs configured split")
    assert t["p_value"] == 0.0 and R2 in t["detail"]


def test_unconfigured_revision_shows_up_in_the_split_table() -> None:
    df = frame(rows("default", [0] * 10, revision=R1), rows("default", [0] * 2, revision="r-stray", start=10))
    sp = compare(df, configured_split={R1: 100}).split
    stray = sp[sp["revision"] == "r-stray"].iloc[0]
    assert stray["configured_pct"] == 0 and stray["observed_n"] == 2 and stray["p_value"] == 0.0


def test_split_without_revision_attribution_explains_why() -> None:
    df = frame(rows("default", [0] * 10))
    t = _test(compare(df, configured_split={"latest": 10, "prev": 90}), "observed vs configured split")
    assert math.isnan(t["p_value"]) and "x-kserve-revision" in t["detail"]


def test_bad_configured_split_is_refused() -> None:
    with pytest.raises(ValidationError):
        compare(frame(rows("default", [0])), configured_split={"latest": -5, "prev": 0})


def test_no_configured_split_means_no_split_test() -> None:
    cmp = compare(frame(_default_rows(5, 5)))
    assert cmp.split.empty and not cmp.tests["test"].str.contains("split").any()


# -- verdict ---------------------------------------------------------------------------------


def test_verdict_promotes_a_healthy_identical_candidate() -> None:
    cmp = compare(frame(rows("latest", CLASSES, latency=12.0), rows("prev", CLASSES, latency=10.0)))
    v = cmp.verdict(max_error_rate=0.0, max_p95_latency_ms=50, min_agreement=0.99)
    assert v.recommendation == "promote" and v.promote
    assert all(c.passed for c in v.checks)
    assert len(v.reasons) == 4
    assert list(v.table().columns) == ["check", "passed", "observed", "threshold", "detail"]


@pytest.mark.parametrize(
    ("kwargs", "failing"),
    [
        ({"max_error_rate": 0.05}, "error rate"),
        ({"max_error_rate": 0.5, "max_p95_latency_ms": 5}, "p95 latency"),
        ({"max_error_rate": 0.5, "min_agreement": 0.95}, "agreement"),
    ],
)
def test_verdict_rolls_back_on_each_failed_check(kwargs: dict[str, Any], failing: str) -> None:
    latest = list(CLASSES)
    latest[0] = 2
    df = frame(rows("latest", latest, latency=20.0, errors={5: "boom"}), rows("prev", CLASSES))
    v = compare(df).verdict(**kwargs)
    assert v.recommendation == "rollback" and not v.promote
    failed = [c.name for c in v.checks if c.passed is False]
    assert failed == [failing]
    assert len(v.reasons) == 1


def test_verdict_without_candidate_rows_rolls_back() -> None:
    v = compare(frame(rows("prev", CLASSES))).verdict()
    assert v.recommendation == "rollback" and "no requests to latest" in v.reasons[0]


def test_verdict_when_every_request_failed() -> None:
    df = frame(rows("latest", [0, 1], errors={0: "a", 1: "b"}), rows("prev", [0, 1], errors={0: "a", 1: "b"}))
    cmp = compare(df)
    assert cmp.summary["p50_ms"].isna().all() and (cmp.summary["error_rate"] == 1.0).all()
    v = cmp.verdict(max_p95_latency_ms=100, min_agreement=0.9)
    assert v.recommendation == "rollback"
    assert {c.name: c.passed for c in v.checks} == {
        "candidate answered": False,
        "error rate": False,
        "p95 latency": None,
        "agreement": None,
    }


def test_verdict_on_unattributed_split_samples_judges_all_rows() -> None:
    v = compare(frame(rows("default", [0] * 20))).verdict()
    assert v.promote and "all: 0.00% of 20" in v.reasons[1]


def test_split_only_samples_compare_the_two_revisions_unpaired() -> None:
    rng = np.random.default_rng(4)
    df = frame(
        rows("default", [0] * 150, revision=R1, latency=list(rng.normal(10, 1, 150))),
        rows("default", [1] * 50, revision=R2, latency=list(rng.normal(20, 1, 50)), start=150, errors={0: "boom"}),
    )
    cmp = compare(df)
    assert cmp.revision_sides == (R1, R2)
    assert cmp.agreement.n_pairs == 0
    shift = _test(cmp, "prediction shift")
    assert shift["groups"] == f"{R2} vs {R1}" and shift["p_value"] < 1e-10
    assert _test(cmp, "latency")["effect"] == pytest.approx(10, abs=1)
    v = cmp.verdict(max_error_rate=0.01)
    assert not v.promote and f"revision {R2}: 2.00% of 50" in v.reasons[0]


def test_unset_thresholds_are_skipped_not_failed() -> None:
    v = compare(frame(rows("latest", CLASSES))).verdict(min_agreement=0.9)
    names = {c.name: c.passed for c in v.checks}
    assert names["p95 latency"] is None and names["agreement"] is None and v.promote


def test_verdict_html_and_text() -> None:
    v = compare(frame(rows("prev", CLASSES))).verdict()
    assert "rollback" in v._repr_html_() and "ROLLBACK" in repr(v)


# -- edge cases ------------------------------------------------------------------------------


def test_empty_frame() -> None:
    cmp = compare(empty_results())
    assert cmp.summary.empty and cmp.kind == "empty" and cmp.agreement.n_pairs == 0
    assert cmp.verdict().recommendation == "rollback"
    assert "0 requests" in cmp._repr_html_()
    figs = cmp.figures()
    assert set(figs) == {"predictions", "latency", "agreement", "split"}


def test_non_json_error_rows_are_just_errors() -> None:
    df = frame(rows("latest", [0, 1]), rows("prev", [0, 1]))
    df.loc[1, "error"] = "HTTP 502: <html><body>upstream connect error</body></html>"
    df.loc[1, "prediction"] = None
    cmp = compare(df)
    assert cmp.summary.set_index("target").loc["latest", "errors"] == 1
    assert cmp.agreement.n_pairs == 1


def test_duplicate_rows_pair_once() -> None:
    df = frame(rows("latest", [0, 1]), rows("latest", [0, 1]), rows("prev", [0, 1]))
    assert compare(df).agreement.n_pairs == 2


def test_forced_kind() -> None:
    df = frame(rows("latest", [1.0, 2.0]), rows("prev", [1.0, 3.0]))
    cmp = compare(df, kind="class")
    assert cmp.kind == "class" and cmp.agreement.confusion is not None
    with pytest.raises(ValidationError):
        compare(df, kind="bogus")


# -- display ---------------------------------------------------------------------------------


def _full() -> Comparison:
    latest = list(CLASSES)
    latest[3] = 2
    df = frame(
        rows("latest", latest, revision=R2, latency=12.0),
        rows("prev", CLASSES, revision=R1, latency=10.0),
        _default_rows(18, 2),
    )
    return compare(df, configured_split={"latest": 10, "prev": 90})


def test_repr_html_shows_tables_but_no_verdict() -> None:
    h = _full()._repr_html_()
    assert "<table" in h and "Agreement" in h and "90.0%" in h and "Observed vs configured split" in h
    assert "promote" not in h.lower() and "rollback" not in h.lower()


def test_figures_for_classes_use_side_colours_and_say_what_they_show() -> None:
    figs = _full().figures()
    assert set(figs) == {"predictions", "latency", "agreement", "split"}
    assert all(isinstance(f, go.Figure) for f in figs.values())
    preds = figs["predictions"]
    assert "share of each predicted class" in preds.layout.title.text
    colours = {t.name: t.marker.color for t in preds.data}
    assert colours[f"latest · {R2}"] == SIDE_COLORS["latest"]
    assert colours[f"prev · {R1}"] == SIDE_COLORS["prev"]
    assert colours[f"default · {R1}"] == SIDE_COLORS["default"]
    # two default groups: same colour, different pattern
    pats = [t.marker.pattern.shape for t in preds.data if t.name.startswith("default")]
    assert len(set(pats)) == 2
    lat_colours = {t.name.split(" (")[0]: t.line.color for t in figs["latency"].data}
    assert lat_colours[f"latest · {R2}"] == SIDE_COLORS["latest"]
    assert "90.0% of 10 agree" in figs["agreement"].layout.title.text
    assert isinstance(figs["agreement"].data[0], go.Heatmap)
    assert "observed share of 20" in figs["split"].layout.title.text
    assert [t.name for t in figs["split"].data] == ["configured", "observed"]


def test_figures_for_numbers_and_missing_data() -> None:
    cmp = compare(frame(rows("latest", [1.0, 2.0, 3.0]), rows("prev", [1.0, 2.5, 3.0])))
    figs = cmp.figures()
    assert all(isinstance(t, go.Histogram) for t in figs["predictions"].data)
    assert "Paired predictions" in figs["agreement"].layout.title.text
    assert "no configured split" in figs["split"].layout.title.text
    one_side = compare(frame(rows("latest", CLASSES))).figures()
    assert "no paired" in one_side["agreement"].layout.title.text


def test_figures_have_no_display_side_effects(capsys: pytest.CaptureFixture[str]) -> None:
    _full().figures()
    assert capsys.readouterr().out == ""
