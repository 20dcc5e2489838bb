"""Stratified sampling of a real small scan DB: strata, allocation, reproducibility, export, review, estimate."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from pyproj import Geod

from amberwatch.cli import main
from amberwatch.db import connect
from amberwatch.errors import AmberwatchError, AmberwatchWarning, InvalidInputError, NotFoundError
from amberwatch.results.area_review import (
    estimate_for_scan,
    import_reference_csv,
    pending_units,
    record_reference,
    review_progress,
)
from amberwatch.results.map_units import (
    BUFFER,
    MINING,
    NOT_MINING,
    cell_bounds_deg,
    row_areas_ha,
    survey_strata,
)
from amberwatch.results.sampling import allocate, draw_sample, export_sample, sample_units
from tests.results.area_scan_db import GRID_CELLS, THRESHOLD, build_scan_db, truth_and_grids


@pytest.fixture
def scan_db(tmp_path):
    """A 4x4-tile z18 scan (16x16 cells per tile) with true pits, plus a failed and an empty tile."""
    truths, grids = truth_and_grids()
    path = tmp_path / "project.db"
    z, x0, y0 = min(grids)
    scan_id = build_scan_db(path, grids, extra_statuses={(z, x0 + 9, y0): "failed", (z, x0 + 10, y0): "empty"})
    conn = connect(path)
    yield conn, scan_id, truths, grids, path
    conn.close()


def true_mining_area_ha(truths: dict) -> float:
    return sum(float(t.sum(axis=1) @ row_areas_ha(z, y, GRID_CELLS)) for (z, x, y), t in truths.items())


def review_by_truth(conn, sample_id, truths):
    for u in pending_units(conn, sample_id):
        is_mining = truths[(u["z"], u["x"], u["y"])][u["cell_row"], u["cell_col"]]
        record_reference(conn, u["unit_id"], "mining" if is_mining else "not_mining", "truth")


def test_cell_geometry_and_geodesic_area():
    west, south, east, north = cell_bounds_deg(18, 150456, 87400, 16, 0, 0)
    assert west < east and south < north
    assert north == pytest.approx(51.31, abs=0.01)
    area_m2, _ = Geod(ellps="WGS84").polygon_area_perimeter([west, east, east, west], [south, south, north, north])
    assert row_areas_ha(18, 87400, 16)[0] == pytest.approx(abs(area_m2) / 1e4)
    # ~96 m tile side at 51.3 N -> ~6 m cells, ~36 m^2.
    assert row_areas_ha(18, 87400, 16)[0] * 1e4 == pytest.approx(35.7, rel=0.02)
    with pytest.raises(InvalidInputError, match="outside a 16x16 grid"):
        cell_bounds_deg(18, 0, 0, 16, 16, 0)


def test_survey_counts_strata_in_one_pass(scan_db):
    conn, scan_id, _truths, grids, _ = scan_db
    survey = survey_strata(conn, scan_id)
    mapped = sum(int((g / 255.0 >= THRESHOLD).sum()) for g in grids.values())
    assert survey.cell_counts == {MINING: mapped, BUFFER: 0, NOT_MINING: 16 * 256 - mapped}
    assert survey.tiles_done == 16  # failed/empty tiles hold no map units
    total = sum(float(row_areas_ha(z, y, GRID_CELLS).sum()) * GRID_CELLS for (z, x, y) in grids)
    assert survey.total_area_ha == pytest.approx(total)

    buffered = survey_strata(conn, scan_id, buffer_m=10)
    assert buffered.cell_counts[MINING] == mapped
    assert 0 < buffered.cell_counts[BUFFER] < survey.cell_counts[NOT_MINING]
    assert buffered.total_cells == survey.total_cells
    assert buffered.total_area_ha == pytest.approx(survey.total_area_ha)
    wider = survey_strata(conn, scan_id, buffer_m=30)
    assert wider.cell_counts[BUFFER] > buffered.cell_counts[BUFFER]


def test_buffer_crosses_tile_edges(tmp_path):
    """A single mining cell at a tile's east edge puts buffer cells in the neighbouring tile."""
    grids = {}
    for dx in (0, 1):
        grids[(18, 150456 + dx, 87400)] = np.zeros((16, 16), dtype=np.uint8)
    grids[(18, 150456, 87400)][8, 15] = 255
    path = tmp_path / "edge.db"
    scan_id = build_scan_db(path, grids)
    conn = connect(path)
    survey = survey_strata(conn, scan_id, buffer_m=7)  # cells are ~6 m: neighbours within one cell
    east = survey.buffer_masks[(18, 150457, 87400)]
    assert east[8, 0] and east[7, 0] and east[9, 0] and not east[8, 1]
    west = survey.buffer_masks[(18, 150456, 87400)]
    assert west[8, 14] and not west[8, 15]
    assert survey.cell_counts[BUFFER] == 8  # the 3x3 neighbourhood minus the mining cell


def test_allocation_rules():
    areas = {MINING: 10.0, BUFFER: 30.0, NOT_MINING: 960.0}
    cells = {MINING: 1_000, BUFFER: 3_000, NOT_MINING: 96_000}
    assert allocate(100, areas, cells, "proportional") == {MINING: 2, BUFFER: 3, NOT_MINING: 95}
    assert allocate(99, areas, cells, "equal") == {MINING: 33, BUFFER: 33, NOT_MINING: 33}
    opt = allocate(100, areas, cells, "optimal", {MINING: 0.5, BUFFER: 0.5, NOT_MINING: 0.99})
    assert sum(opt.values()) == 100 and opt[MINING] > 2
    # Never more than a stratum holds; the rest goes elsewhere.
    assert allocate(50, areas, {MINING: 3, BUFFER: 3000, NOT_MINING: 96_000}, "equal")[MINING] == 3
    # A stratum pinned at its minimum takes the rest once the others are exhausted.
    tiny = allocate(
        10, {MINING: 1.0, NOT_MINING: 1.0}, {MINING: 50, NOT_MINING: 5}, "optimal", {MINING: 1.0, NOT_MINING: 0.5}
    )
    assert tiny == {MINING: 5, NOT_MINING: 5}
    with pytest.raises(InvalidInputError, match="too small"):
        allocate(5, areas, cells, "equal", min_per_stratum=2 * 2)
    with pytest.raises(InvalidInputError, match="larger than the 100000 map units"):
        allocate(100_001, areas, cells, "equal")
    with pytest.raises(InvalidInputError, match="allocation 'random'"):
        allocate(10, areas, cells, "random")


def test_sample_is_stored_stratified_and_reproducible(scan_db):
    conn, scan_id, _truths, grids, _ = scan_db
    a = draw_sample(conn, scan_id, 90, allocation="equal", seed=42, buffer_m=10)
    b = draw_sample(conn, scan_id, 90, allocation="equal", seed=42, buffer_m=10)
    c = draw_sample(conn, scan_id, 90, allocation="equal", seed=43, buffer_m=10)
    assert [p.n_units for p in a.strata] == [30, 30, 30]
    key = lambda u: (u["stratum"], u["z"], u["x"], u["y"], u["cell_row"], u["cell_col"])  # noqa: E731
    ua, ub, uc = (sample_units(conn, s.sample_id) for s in (a, b, c))
    assert [key(u) for u in ua] == [key(u) for u in ub]  # same seed, same units, same review order
    assert sorted(map(key, ua)) != sorted(map(key, uc))
    assert len(set(map(key, ua))) == 90  # without replacement
    survey = survey_strata(conn, scan_id, buffer_m=10)
    for u in ua:
        grid = grids[(u["z"], u["x"], u["y"])]
        value = grid[u["cell_row"], u["cell_col"]]
        assert u["map_prob"] == pytest.approx(value / 255)
        is_buffer = bool(
            survey.buffer_masks.get((u["z"], u["x"], u["y"]), np.zeros((16, 16), bool))[u["cell_row"], u["cell_col"]]
        )
        expected = MINING if value / 255 >= THRESHOLD else (BUFFER if is_buffer else NOT_MINING)
        assert u["stratum"] == expected
        assert u["map_class"] == (MINING if expected == MINING else NOT_MINING)
        assert (u["west"], u["south"], u["east"], u["north"]) == pytest.approx(
            cell_bounds_deg(u["z"], u["x"], u["y"], 16, u["cell_row"], u["cell_col"])
        )
        assert u["reference_class"] is None
    assert {p.stratum: p.cell_count for p in a.strata} == {s: n for s, n in survey.cell_counts.items() if n}
    # Review order mixes the strata rather than listing them one after another.
    assert len({u["stratum"] for u in ua[:15]}) >= 2


def test_sample_every_cell_is_reachable(scan_db):
    """Drawing every cell yields each cell once in its stratum (positions map one-to-one onto cells)."""
    conn, scan_id, _, grids, _ = scan_db
    survey = survey_strata(conn, scan_id, buffer_m=10)
    s = draw_sample(conn, scan_id, survey.total_cells, seed=1, buffer_m=10)
    units = sample_units(conn, s.sample_id)
    got = {(u["x"], u["y"], u["cell_row"], u["cell_col"]): u["stratum"] for u in units}
    assert len(got) == len(units) == survey.total_cells
    for stratum in (MINING, BUFFER, NOT_MINING):
        assert sum(v == stratum for v in got.values()) == survey.cell_counts[stratum]
    want_mining = {
        (x, y, int(r), int(c)) for (z, x, y), g in grids.items() for r, c in zip(*np.nonzero(g / 255.0 >= THRESHOLD))
    }
    assert {k for k, v in got.items() if v == MINING} == want_mining


def test_sample_errors(scan_db):
    conn, scan_id, *_ = scan_db
    with pytest.raises(NotFoundError, match="scan 99 does not exist"):
        draw_sample(conn, 99, 10, seed=1)
    with pytest.raises(InvalidInputError, match="exactly one"):
        draw_sample(conn, scan_id, seed=1)
    with pytest.raises(NotFoundError, match="area sample 77 does not exist"):
        export_sample(conn, 77)


def test_target_se_sizes_the_sample(scan_db):
    conn, scan_id, *_ = scan_db
    s = draw_sample(conn, scan_id, target_se=0.03, seed=5)
    assert 30 < sum(p.n_units for p in s.strata) == s.n_requested < 400


def test_export_geojson_and_csv(scan_db):
    conn, scan_id, *_ = scan_db
    s = draw_sample(conn, scan_id, 20, allocation="equal", seed=7)
    gj = json.loads(export_sample(conn, s.sample_id, "geojson"))
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == 20
    f = gj["features"][0]
    ring = f["geometry"]["coordinates"][0]
    assert f["geometry"]["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) == 5
    assert {"unit_id", "stratum", "map_class", "reference_class", "z", "x", "y", "cell_row", "cell_col"} <= set(
        f["properties"]
    )
    rows = list(csv.DictReader(io.StringIO(export_sample(conn, s.sample_id, "csv"))))
    assert len(rows) == 20 and list(rows[0])[:2] == ["unit_id", "reference_class"]
    assert rows[0]["reference_class"] == ""
    blind = list(csv.DictReader(io.StringIO(export_sample(conn, s.sample_id, "csv", blind=True))))
    assert "map_class" not in blind[0] and "stratum" not in blind[0] and "map_prob" not in blind[0]
    with pytest.raises(InvalidInputError, match="export format 'kml'"):
        export_sample(conn, s.sample_id, "kml")


def test_import_reference_csv_and_errors(scan_db, tmp_path):
    conn, scan_id, *_ = scan_db
    s = draw_sample(conn, scan_id, 10, allocation="equal", seed=3)
    other = draw_sample(conn, scan_id, 10, allocation="equal", seed=4)
    ids = [u["unit_id"] for u in sample_units(conn, s.sample_id)]
    foreign = sample_units(conn, other.sample_id)[0]["unit_id"]

    def write(text):
        p = tmp_path / "ref.csv"
        p.write_text(text)
        return p

    with pytest.raises(InvalidInputError, match="line 3: unit_id 999999 is not a unit of sample"):
        import_reference_csv(conn, s.sample_id, write(f"unit_id,reference_class\n{ids[0]},mining\n999999,mining\n"))
    with pytest.raises(InvalidInputError, match=f"line 2: unit_id {foreign} is not a unit of sample {s.sample_id}"):
        import_reference_csv(conn, s.sample_id, write(f"unit_id,reference_class\n{foreign},mining\n"))
    with pytest.raises(InvalidInputError, match=r"line 3 \(unit_id \d+\): reference class 'quarry'"):
        import_reference_csv(conn, s.sample_id, write(f"unit_id,reference_class\n{ids[0]},mining\n{ids[1]},quarry\n"))
    with pytest.raises(InvalidInputError, match="line 2: unit_id 'abc' is not an integer"):
        import_reference_csv(conn, s.sample_id, write("unit_id,reference_class\nabc,mining\n"))
    with pytest.raises(InvalidInputError, match="no 'reference_class' column"):
        import_reference_csv(conn, s.sample_id, write("unit_id,label\n1,mining\n"))
    assert review_progress(conn, s.sample_id)["reviewed"] == 0  # nothing written by a bad file

    r = import_reference_csv(
        conn,
        s.sample_id,
        write(f"unit_id,reference_class,note\n{ids[0]},Mining,x\n{ids[1]},not mining,\n{ids[2]},,\n"),
    )
    assert r == {"recorded": 2, "skipped_blank": 1, "no_imagery": 0, "replaced": 0}
    units = {u["unit_id"]: u for u in sample_units(conn, s.sample_id)}
    assert units[ids[0]]["reference_class"] == "mining" and units[ids[0]]["reviewed_by"] == "import:ref.csv"
    assert units[ids[1]]["reference_class"] == "not_mining" and units[ids[1]]["reviewed_at"]
    assert [u["unit_id"] for u in pending_units(conn, s.sample_id)] == ids[2:]
    assert "map_class" not in pending_units(conn, s.sample_id)[0]
    assert "map_class" in pending_units(conn, s.sample_id, include_map_class=True)[0]


def test_record_reference(scan_db):
    conn, scan_id, *_ = scan_db
    s = draw_sample(conn, scan_id, 10, allocation="equal", seed=3)
    uid = pending_units(conn, s.sample_id)[0]["unit_id"]
    u = record_reference(conn, uid, "mining", "olena")
    assert u["reference_class"] == "mining" and u["reviewed_by"] == "olena"
    assert record_reference(conn, uid, "not_mining", "taras")["reference_class"] == "not_mining"
    with pytest.raises(InvalidInputError, match="reference class 'pit'"):
        record_reference(conn, uid, "pit", "olena")
    with pytest.raises(NotFoundError, match="area sample unit 424242"):
        record_reference(conn, 424242, "mining", "olena")


def test_estimate_refuses_unreviewed_stratum(scan_db):
    conn, scan_id, *_ = scan_db
    s = draw_sample(conn, scan_id, 10, allocation="equal", seed=3)
    uid = next(u for u in pending_units(conn, s.sample_id, include_map_class=True) if u["stratum"] == MINING)["unit_id"]
    record_reference(conn, uid, "mining", "olena")
    with pytest.raises(AmberwatchError, match="stratum 'mining' has 1 reviewed sample unit"):
        estimate_for_scan(conn, scan_id, s.sample_id)


def test_estimate_from_reviewed_sample_covers_truth(scan_db):
    conn, scan_id, truths, *_ = scan_db
    true_ha = true_mining_area_ha(truths)
    s = draw_sample(conn, scan_id, 150, allocation="equal", seed=2024, buffer_m=10)
    review_by_truth(conn, s.sample_id, truths)
    est, info = estimate_for_scan(conn, scan_id)  # latest sample of the scan
    assert info == {"scan_id": scan_id, "sample_id": s.sample_id, "no_imagery": 0, "units": 150, "reviewed": 150}
    mining = est.get(MINING)
    assert mining.mapped_area_ha == pytest.approx(s.strata[0].area_ha)
    lo, hi = mining.area_interval_ha
    assert lo <= true_ha <= hi
    assert est.n_units == 150 and est.map_classes == [MINING, NOT_MINING]


def test_sampler_is_unbiased_over_seeds(scan_db):
    """Over 40 seeds, the mean estimate of the real sampler + estimator is close to the true area."""
    conn, scan_id, truths, *_ = scan_db
    true_ha = true_mining_area_ha(truths)
    estimates, covered = [], 0
    for seed in range(40):
        s = draw_sample(conn, scan_id, 90, allocation="equal", seed=seed, buffer_m=10)
        review_by_truth(conn, s.sample_id, truths)
        m = estimate_for_scan(conn, scan_id, s.sample_id)[0].get(MINING)
        estimates.append(m.area_ha)
        covered += abs(m.area_ha - true_ha) <= m.area_ci95_ha
    se_of_mean = np.std(estimates) / np.sqrt(len(estimates))
    assert abs(np.mean(estimates) - true_ha) <= 3 * se_of_mean
    assert covered >= 33  # ~95% of 40, with slack for 40 draws


def test_cli_sample_export_import_estimate(scan_db, tmp_path):
    _conn, scan_id, truths, _, path = scan_db
    runner = CliRunner()
    db = ["--db", str(path)]
    r = runner.invoke(
        main,
        [
            "area",
            "sample",
            "--scan",
            str(scan_id),
            "--n",
            "60",
            "--allocation",
            "equal",
            "--seed",
            "9",
            "--buffer-m",
            "10",
            "--json",
            *db,
        ],
    )
    assert r.exit_code == 0, r.output
    sample_id = json.loads(r.output)["sample_id"]
    out = tmp_path / "sheet.csv"
    r = runner.invoke(
        main, ["area", "export", "--sample", str(sample_id), "--format", "csv", "--blind", "-o", str(out), *db]
    )
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open()))
    for row in rows:
        t = truths[(int(row["z"]), int(row["x"]), int(row["y"]))][int(row["cell_row"]), int(row["cell_col"])]
        row["reference_class"] = "mining" if t else "not_mining"
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    r = runner.invoke(main, ["area", "import-reference", "--sample", str(sample_id), str(out), *db])
    assert r.exit_code == 0 and "recorded 60" in r.output, r.output
    r = runner.invoke(main, ["area", "estimate", "--scan", str(scan_id), "--json", *db])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["sample_id"] == sample_id and d["reviewed"] == 60
    assert d["sentence"].startswith("Between ") and "based on 60 reviewed sample points" in d["sentence"]
    r = runner.invoke(main, ["area", "estimate", "--scan", str(scan_id), *db])
    assert r.exit_code == 0 and "hectares of land were mined" in r.output
    r = runner.invoke(main, ["area", "list", "--scan", str(scan_id), *db])
    assert r.exit_code == 0 and f"sample {sample_id:>4}" in r.output and "reviewed 60/60" in r.output
    r = runner.invoke(main, ["area", "export", "--sample", str(sample_id), *db])
    assert json.loads(r.output)["type"] == "FeatureCollection"
    bad = tmp_path / "bad.csv"
    bad.write_text("unit_id,reference_class\n123456,mining\n")
    r = runner.invoke(main, ["area", "import-reference", "--sample", str(sample_id), str(bad), *db])
    assert r.exit_code == 1 and "line 2: unit_id 123456" in r.output
    r = runner.invoke(main, ["area", "sample", "--scan", str(scan_id), *db])
    assert r.exit_code == 2 and "--n or --target-se" in r.output


def test_sampling_a_running_scan_warns(scan_db):
    conn, scan_id, *_ = scan_db
    conn.execute("UPDATE scans SET status = 'running' WHERE id = ?", (scan_id,))
    with pytest.warns(AmberwatchWarning, match=f"scan {scan_id} is 'running'"):
        draw_sample(conn, scan_id, 10, seed=1)


def test_cells_without_imagery_are_outside_the_frame_and_the_buffer(tmp_path):
    _, grids = truth_and_grids()
    west = min(x for _, x, _ in grids)
    half = np.ones((GRID_CELLS, GRID_CELLS), dtype=bool)
    half[:, : GRID_CELLS // 2] = False  # the west half of the westmost tile column has no imagery
    valid = {k: half for k in grids if k[1] == west}
    plain = build_scan_db(tmp_path / "plain.db", grids)
    masked = build_scan_db(tmp_path / "masked.db", grids, valid=valid)
    full = survey_strata(connect(tmp_path / "plain.db"), plain, buffer_m=10)
    conn = connect(tmp_path / "masked.db")
    frame = survey_strata(conn, masked, buffer_m=10)
    assert frame.total_cells == full.total_cells - len(valid) * GRID_CELLS * GRID_CELLS // 2
    gone_ha = sum(float((~half).sum(axis=1) @ row_areas_ha(z, y, GRID_CELLS)) for z, _, y in valid)
    assert frame.total_area_ha == pytest.approx(full.total_area_ha - gone_ha, rel=1e-9)
    assert frame.cell_counts[MINING] < full.cell_counts[MINING]  # mapped pits on no-data are not in the frame
    everything = draw_sample(conn, masked, frame.total_cells, allocation="proportional", seed=3, buffer_m=10)
    units = sample_units(conn, everything.sample_id)
    assert len(units) == frame.total_cells and {u["stratum"] for u in units} == {MINING, BUFFER, NOT_MINING}
    assert not any(u["x"] == west and u["cell_col"] < GRID_CELLS // 2 for u in units)
