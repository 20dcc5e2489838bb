"""The area estimator against Olofsson et al. 2014 (Table 8 worked example) and a simulated map."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import ndimage

from amberwatch.cli import main
from amberwatch.errors import AmberwatchError, InvalidInputError
from amberwatch.results.area_estimate import (
    Z_95,
    StratumCounts,
    estimate_area,
    journalist_sentence,
    parse_counts_csv,
    sample_size_for_target_se,
    stratified_proportion,
)

CLASSES = ["deforestation", "forest_gain", "stable_forest", "stable_nonforest"]
TABLE_8 = [[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]]
MAPPED_PIXELS = [200_000, 150_000, 3_200_000, 6_450_000]
PIXEL_HA = 0.09  # 30 m Landsat pixel

# Olofsson et al. 2014, section 5 (areas in ha, +/- 95% half-widths; accuracies to 2 decimals).
PAPER_AREA_HA = [21_158, 11_686, 285_770, 581_386]
PAPER_AREA_CI95_HA = [6_158, 3_756, 15_510, 16_282]
PAPER_USERS = [0.88, 0.73, 0.93, 0.96]
PAPER_PRODUCERS = [0.75, 0.85, 0.93, 0.96]
PAPER_OVERALL = 0.95


def paper_strata() -> list[StratumCounts]:
    return [
        StratumCounts(name, name, px * PIXEL_HA, dict(zip(CLASSES, row)))
        for name, row, px in zip(CLASSES, TABLE_8, MAPPED_PIXELS)
    ]


def counts_csv_text() -> str:
    lines = ["map_class,mapped_area_ha," + ",".join(CLASSES)]
    for name, row, px in zip(CLASSES, TABLE_8, MAPPED_PIXELS):
        lines.append(f"{name},{px * PIXEL_HA:g}," + ",".join(map(str, row)))
    return "\n".join(lines) + "\n"


def check_against_paper(classes: list[dict], overall: float) -> None:
    by_name = {c["name"]: c for c in classes}
    for i, name in enumerate(CLASSES):
        c = by_name[name]
        assert c["area_ha"] == pytest.approx(PAPER_AREA_HA[i], rel=0.005), name
        assert c["area_ci95_ha"] == pytest.approx(PAPER_AREA_CI95_HA[i], rel=0.005), name
        assert round(c["users_accuracy"], 2) == PAPER_USERS[i], name
        assert round(c["producers_accuracy"], 2) == PAPER_PRODUCERS[i], name
        assert c["mapped_area_ha"] == pytest.approx(MAPPED_PIXELS[i] * PIXEL_HA)
    assert round(overall, 2) == PAPER_OVERALL


def test_paper_example_library():
    est = estimate_area(paper_strata())
    d = est.to_dict()
    check_against_paper(d["classes"], d["overall_accuracy"])
    # Exact values of this implementation (paper rounds to whole ha).
    assert est.get("deforestation").area_ha == pytest.approx(21_157.76, abs=0.01)
    assert est.get("deforestation").area_ci95_ha == pytest.approx(6_157.52, abs=0.01)
    assert est.get("stable_nonforest").area_ci95_ha == pytest.approx(16_281.4, abs=0.1)
    # Paper's accuracy intervals: U 0.88+/-0.07, P 0.75+/-0.21, O 0.95+/-0.02.
    assert est.get("deforestation").users_accuracy_ci95 == pytest.approx(0.07, abs=0.005)
    assert est.get("deforestation").producers_accuracy_ci95 == pytest.approx(0.21, abs=0.005)
    assert est.overall_accuracy_ci95 == pytest.approx(0.02, abs=0.005)
    # Error matrix in area proportions sums to 1 and its row sums are the map weights.
    m = np.array(est.error_matrix)
    assert m.sum() == pytest.approx(1.0)
    assert m.sum(axis=1) == pytest.approx(np.array(MAPPED_PIXELS) / sum(MAPPED_PIXELS))
    assert m[0, 0] == pytest.approx(0.02 * 66 / 75)
    assert est.total_area_ha == pytest.approx(900_000)
    assert est.n_units == 640


def test_paper_example_cli_counts_json(tmp_path):
    path = tmp_path / "table8.csv"
    path.write_text(counts_csv_text())
    result = CliRunner().invoke(main, ["area", "estimate", "--counts", str(path), "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.output)
    check_against_paper(d["classes"], d["overall_accuracy"])
    assert d["error_matrix"]["map_classes"] == CLASSES
    assert "based on 640 reviewed sample points" in d["sentence"]


def test_cli_counts_readable_table(tmp_path):
    path = tmp_path / "table8.csv"
    path.write_text(counts_csv_text())
    result = CliRunner().invoke(main, ["area", "estimate", "--counts", str(path)])
    assert result.exit_code == 0, result.output
    assert "21,157.8" in result.output and "overall accuracy: 0.947" in result.output
    assert "Between 15,000 and 27,315 hectares" in result.output


def test_one_stratum_per_class_equals_olofsson_formulas():
    """Splitting a map class into two strata with equal proportions keeps the point estimates."""
    base = estimate_area(paper_strata())
    strata = paper_strata()
    s = strata[3]
    half = {k: v for k, v in s.counts.items()}
    strata[3:] = [
        StratumCounts("nonforest_a", s.map_class, s.area_ha / 2, half),
        StratumCounts("nonforest_b", s.map_class, s.area_ha / 2, half),
    ]
    split = estimate_area(strata)
    for a, b in zip(base.classes, split.classes):
        assert a.area_ha == pytest.approx(b.area_ha)
        assert a.users_accuracy == pytest.approx(b.users_accuracy)
        assert a.producers_accuracy == pytest.approx(b.producers_accuracy)
    assert split.map_classes == CLASSES


def test_refuses_stratum_with_fewer_than_two_units():
    strata = paper_strata()
    strata[1] = StratumCounts("forest_gain", "forest_gain", 13_500, {"forest_gain": 1})
    with pytest.raises(AmberwatchError, match="stratum 'forest_gain' has 1 reviewed sample unit"):
        estimate_area(strata)


def test_refuses_stratum_with_fewer_than_two_units_cli(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("map_class,mapped_area_ha,mining,not_mining\nmining,10,1,0\nnot_mining,990,3,50\n")
    result = CliRunner().invoke(main, ["area", "estimate", "--counts", str(path), "--json"])
    assert result.exit_code == 1
    assert "stratum 'mining' has 1 reviewed sample unit" in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mapped_area_ha,a,b\n1,2,3\n", "no 'map_class' column"),
        ("map_class,mapped_area_ha,a,b\na,ten,2,3\n", "row 2: mapped_area_ha 'ten' is not a number"),
        ("map_class,mapped_area_ha,a,b\na,10,2,-3\n", "row 2: count '-3' for 'b'"),
        ("map_class,mapped_area_ha,a,b\na,10,2\n", "row 2 has 3 fields"),
        ("map_class,mapped_area_ha,a,b\nc,10,2,3\n", "map class 'c'"),
        ("map_class,mapped_area_ha,a,b\n", "no rows"),
    ],
)
def test_counts_csv_errors(text, message):
    with pytest.raises(InvalidInputError, match=message):
        estimate_area(parse_counts_csv(text))


def test_zero_area_stratum_is_ignored():
    strata = [
        StratumCounts("mining", "mining", 0.0, {"mining": 0, "not_mining": 0}),
        StratumCounts("not_mining", "not_mining", 100.0, {"mining": 2, "not_mining": 48}),
    ]
    est = estimate_area(strata)
    assert est.get("mining").area_ha == pytest.approx(4.0)
    assert est.get("mining").users_accuracy is None
    assert est.get("mining").producers_accuracy == 0.0


def test_sample_size_equation_13():
    # Olofsson et al. 2014 section 5.1: U = 0.7, 0.6, 0.9, 0.95; W = 0.02, 0.015, 0.32, 0.645; S(O) = 0.01.
    assert sample_size_for_target_se([0.7, 0.6, 0.9, 0.95], [0.02, 0.015, 0.32, 0.645], 0.01) == 641
    result = CliRunner().invoke(
        main,
        [
            "area",
            "sample-size",
            "--users-accuracy",
            "0.7,0.6,0.9,0.95",
            "--weights",
            "0.02,0.015,0.32,0.645",
            "--target-se",
            "0.01",
        ],
    )
    assert result.exit_code == 0 and result.output.strip() == "641"
    with pytest.raises(InvalidInputError, match="sum to 1"):
        sample_size_for_target_se([0.7, 0.9], [0.5, 0.6], 0.01)


def test_journalist_sentence():
    strata = [
        StratumCounts("mining", "mining", 120.0, {"mining": 40, "not_mining": 10}),
        StratumCounts("not_mining", "not_mining", 9_880.0, {"mining": 3, "not_mining": 147}),
    ]
    est = estimate_area(strata)
    text = journalist_sentence(est)
    lo, hi = est.get("mining").area_interval_ha
    assert text == (
        f"Between {round(lo):,} and {round(hi):,} hectares of land were mined in the scanned area "
        "(95% confidence), based on 200 reviewed sample points."
    )


def simulated_map(seed: int = 2014, size: int = 600):
    """A raster with true pits, a noisy probability map thresholded at 0.5, and a one-cell buffer."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    truth = np.zeros((size, size), dtype=bool)
    for _ in range(40):
        cy, cx = rng.integers(0, size, 2)
        r = rng.uniform(2, 12)
        truth |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    prob = np.where(truth, rng.normal(0.6, 0.25, truth.shape), rng.normal(0.2, 0.15, truth.shape))
    mapped = prob >= 0.5
    buffer = ndimage.binary_dilation(mapped) & ~mapped
    return truth, [mapped, buffer, ~mapped & ~buffer]


def test_interval_coverage_on_simulated_map():
    """The 95% interval of the mined area covers the true area in ~95% of 500 stratified samples."""
    truth, strata = simulated_map()
    n_cells = np.array([s.sum() for s in strata])
    n_true = np.array([(s & truth).sum() for s in strata])
    n_h = np.array([100, 200, 200])
    reps = 500
    rng = np.random.default_rng(95)
    # Simple random sampling without replacement within each stratum: hypergeometric counts.
    hits = np.stack(
        [rng.hypergeometric(n_true[h], n_cells[h] - n_true[h], n_h[h], size=reps) for h in range(3)], axis=1
    )
    counts = np.stack([hits, n_h - hits], axis=-1)  # (reps, strata, [mining, not_mining])
    weights = np.broadcast_to(n_cells / n_cells.sum(), (reps, 3))
    p, se = stratified_proportion(weights, counts)
    area, half = n_cells.sum() * p[:, 0], Z_95 * n_cells.sum() * se[:, 0]
    coverage = float(np.mean(np.abs(area - truth.sum()) <= half))
    assert 0.92 <= coverage <= 0.98, coverage
    assert area.mean() == pytest.approx(truth.sum(), rel=0.01)  # unbiased
    # The vectorised core agrees with the full estimator on one replicate.
    one = estimate_area(
        [
            StratumCounts(
                str(h),
                "mining" if h == 0 else "not_mining",
                float(n_cells[h]),
                {"mining": int(counts[0, h, 0]), "not_mining": int(counts[0, h, 1])},
            )
            for h in range(3)
        ]
    )
    assert one.get("mining").area_ha == pytest.approx(area[0])
    assert one.get("mining").area_ci95_ha == pytest.approx(half[0])


def test_note_when_a_stratum_shows_no_omission():
    """A stratum with no reference hits adds no variance; the estimate says so with a rule-of-three bound."""
    est = estimate_area(paper_strata())
    assert len(est.notes) == 1
    assert "stratum 'forest_gain'" in est.notes[0] and "540.0 ha" in est.notes[0]  # 3/75 * 13,500 ha
    strata = [
        StratumCounts("mining", "mining", 120.0, {"mining": 40, "not_mining": 10}),
        StratumCounts("not_mining", "not_mining", 9_880.0, {"mining": 3, "not_mining": 147}),
    ]
    assert estimate_area(strata).notes == []
