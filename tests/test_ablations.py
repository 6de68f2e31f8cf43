"""MEDCSP Figure 7 (notebook 12; medbind_lib.reports.ablations): both readings of the published COVID-F1 drops
(F1 points, percent of the full model's F1) and our drop in both units, against hand-computed values."""
import math

import numpy as np
import pandas as pd
import pytest

from medbind_lib.config import CHOICES, load_profile
from medbind_lib.reports import ablations as AB
from medbind_lib.reports import paper

PUBLISHED = {"medcsp_single": 15.36, "medcsp_a_p": 11.56}
PAPER_FULL = 62.36


def paired():
    """paired_radiology-like rows: our full F1 40; single-source 30 (drop 10 [6, 14]), A+P 38 (drop 2 [-1, 5]);
    rows the readings must ignore: a retrieval row, an AUROC row and a pair against another model."""
    return pd.DataFrame([
        {"set": "covid", "metric": "f1", "a": "medcsp_single", "b": "medcsp", "value_a": 30.0, "value_b": 40.0,
         "a_minus_b": -10.0, "lo": -14.0, "hi": -6.0},
        {"set": "covid", "metric": "f1", "a": "medcsp_a_p", "b": "medcsp", "value_a": 38.0, "value_b": 40.0,
         "a_minus_b": -2.0, "lo": -5.0, "hi": 1.0},
        {"set": "covid", "metric": "auroc", "a": "medcsp_single", "b": "medcsp", "value_a": 70.0, "value_b": 80.0,
         "a_minus_b": -10.0, "lo": -12.0, "hi": -8.0},
        {"set": "mimic_cxr", "metric": "R@10", "a": "medcsp_single", "b": "medcsp", "value_a": 5.0, "value_b": 9.0,
         "a_minus_b": -4.0, "lo": -6.0, "hi": -2.0},
        {"set": "covid", "metric": "f1", "a": "medcsp_single", "b": "medcsp_a", "value_a": 30.0, "value_b": 50.0,
         "a_minus_b": -20.0, "lo": -25.0, "hi": -15.0}])


def test_published_numbers_and_key_default():
    assert paper.MEDCSP_ABLATION_F1_DROP == PUBLISHED
    assert paper.medcsp_zero_shot("covid", "medcsp", "f1") == PAPER_FULL
    assert CHOICES["medcsp_fig7_drop_unit"] == AB.DROP_UNITS == ("points", "percent")
    assert load_profile("smoke")["medcsp_fig7_drop_unit"] == "points"


def test_reading_of_hand_computed():
    # points: 15.36 points = 100 * 15.36 / 62.36 = 24.6312 % of full; the ablation's F1 62.36 - 15.36 = 47.00
    assert AB.reading_of(15.36, PAPER_FULL, "points") == pytest.approx(
        {"drop_points": 15.36, "drop_percent": 24.631174, "ablation_f1": 47.00})
    # percent: 15.36 % of 62.36 = 9.578496 points; the ablation's F1 62.36 - 9.578496 = 52.781504
    assert AB.reading_of(15.36, PAPER_FULL, "percent") == pytest.approx(
        {"drop_points": 9.578496, "drop_percent": 15.36, "ablation_f1": 52.781504})
    # A+P: 11.56 points = 18.5375 %; 11.56 % = 7.208816 points
    assert AB.reading_of(11.56, PAPER_FULL, "points")["drop_percent"] == pytest.approx(18.537524)
    assert AB.reading_of(11.56, PAPER_FULL, "percent")["drop_points"] == pytest.approx(7.208816)
    with pytest.raises(ValueError, match="unit"):
        AB.reading_of(1.0, PAPER_FULL, "ratio")


def test_drop_readings_both_readings_beside_ours():
    t = AB.drop_readings(paired(), PUBLISHED, PAPER_FULL, "points").set_index(["variant", "reading"])
    assert len(t) == 4 and t["used"].to_dict() == {
        ("medcsp_single", "points"): True, ("medcsp_single", "percent"): False,
        ("medcsp_a_p", "points"): True, ("medcsp_a_p", "percent"): False}
    s_pts, s_pct = t.loc[("medcsp_single", "points")], t.loc[("medcsp_single", "percent")]
    assert (s_pts["paper_drop_points"], s_pts["paper_drop_percent"]) == pytest.approx((15.36, 24.631174))
    assert (s_pct["paper_drop_points"], s_pct["paper_drop_percent"]) == pytest.approx((9.578496, 15.36))
    # ours, same under both readings: full 40, single 30 -> 10 points [6, 14] = 25 % of full
    for r in (s_pts, s_pct):
        assert (r["ours_full_f1"], r["ours_ablation_f1"], r["ours_drop_points"], r["ours_drop_points_lo"],
                r["ours_drop_points_hi"], r["ours_drop_percent"]) == pytest.approx((40, 30, 10, 6, 14, 25))
    # compared in the reading's own unit: 10 - 15.36 points; 25 - 15.36 percent
    assert s_pts["ours_minus_paper"] == pytest.approx(-5.36) and s_pct["ours_minus_paper"] == pytest.approx(9.64)
    ap = t.loc[("medcsp_a_p", "percent")]
    assert (ap["ours_drop_points"], ap["ours_drop_percent"], ap["ours_minus_paper"]) == pytest.approx((2, 5, -6.56))
    assert ap["paper_ablation_f1"] == pytest.approx(55.151184)
    used = AB.drop_readings(paired(), PUBLISHED, PAPER_FULL, "percent")
    assert used.loc[used["used"], "reading"].tolist() == ["percent", "percent"]


def test_drops_display_two_decimals():
    shown = AB.drops_display(AB.drop_readings(paired(), PUBLISHED, PAPER_FULL, "points"))
    first = shown.iloc[0]
    assert (first["published"], first["paper drop (% of full)"], first["ours drop (points) [CI]"],
            first["ours - paper (reading's unit)"], first["used"]) == ("15.36", "24.63", "10.00 [6.00, 14.00]",
                                                                       "-5.36", "yes")
    assert shown.iloc[1]["paper drop (points)"] == "9.58" and shown.iloc[1]["used"] == ""


def test_drop_readings_variant_not_run_is_nan():
    t = AB.drop_readings(paired(), {"medcsp_a_d": 3.0}, PAPER_FULL)
    assert len(t) == 2 and t["ours_drop_points"].isna().all() and t["ours_minus_paper"].isna().all()
    assert t["paper_drop_points"].tolist() == pytest.approx([3.0, 3.0 * PAPER_FULL / 100])


def test_paper_marks_in_points_under_each_reading():
    d = paired()
    pts = AB.paper_marks(d, PUBLISHED, "points")
    assert pts[:2] == pytest.approx([-15.36, -11.56]) and all(math.isnan(x) for x in pts[2:])
    # percent: the paper's relative drop on OUR full F1 (40): -15.36 % * 40 = -6.144, -11.56 % * 40 = -4.624
    pct = AB.paper_marks(d, PUBLISHED, "percent")
    assert pct[:2] == pytest.approx([-6.144, -4.624]) and all(np.isnan(pct[2:]))
