"""Area of change between two dates: strata new / stable / gone / no_mining from two scans' maps, reference labels
at both dates, the stratified estimate of hectares newly dug with its 95 % interval, the CLI, and bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from amberwatch.cli import main
from amberwatch.db import connect
from amberwatch.errors import InvalidInputError
from amberwatch.project import Component, migrate_component
from amberwatch.results.area_estimate import estimate_change
from amberwatch.results.area_review import estimate_for_scan, import_reference_csv, record_reference
from amberwatch.results.area_store import MIGRATIONS, ensure_area_schema, find_sample
from amberwatch.results.change_units import CHANGE_STRATA, change_class, survey_change
from amberwatch.results.sampling import draw_change_sample, export_sample, sample_units
from amberwatch.results.store import SCHEMA as RESULTS_SCHEMA
from tests.results.area_scan_db import GRID_CELLS, THRESHOLD, build_scan_db, truth_and_grids

PAIRS = {
    c: p
    for p in [(a, b) for a in ("mining", "not_mining") for b in ("mining", "not_mining")]
    for c in [change_class(*p)]
}
AOI = {"type": "Polygon", "coordinates": [[[26.6, 51.3], [26.64, 51.3], [26.64, 51.32], [26.6, 51.3]]]}


def _coverage(draws: int, seed: int) -> tuple[float, float, float]:
    """Coverage of the stated 95 % interval of "new" over repeated stratified samples of a synthetic map whose true
    change is known; also the truth and the mean estimate (ha)."""
    rng = np.random.default_rng(seed)
    cell_ha = 0.5
    sizes = {"new": 400, "stable": 800, "gone": 200, "no_mining": 6000}
    shares = {  # true change class shares (new, stable, gone, no_mining) per map stratum: errors of both maps
        "new": (0.65, 0.15, 0.0, 0.20),
        "stable": (0.10, 0.80, 0.05, 0.05),
        "gone": (0.0, 0.25, 0.55, 0.20),
        "no_mining": (0.02, 0.005, 0.005, 0.97),
    }
    n = {"new": 50, "stable": 50, "gone": 30, "no_mining": 200}
    population = {s: rng.choice(4, size=sizes[s], p=shares[s]) for s in sizes}
    truth = sum(int((population[s] == 0).sum()) for s in sizes) * cell_ha
    covered, estimates = 0, []
    for _ in range(draws):
        answers = []
        for s in sizes:
            picked = rng.choice(population[s], size=n[s], replace=False)
            answers += [(s, *PAIRS[c], int((picked == k).sum())) for k, c in enumerate(CHANGE_STRATA)]
        new = estimate_change({s: k * cell_ha for s, k in sizes.items()}, answers).get("new")
        covered += new.area_ha - new.area_ci95_ha <= truth <= new.area_ha + new.area_ci95_ha
        estimates.append(new.area_ha)
    return covered / draws, truth, float(np.mean(estimates))


def test_the_95_percent_interval_of_new_hectares_covers_the_truth_about_95_percent_of_the_time():
    coverage, truth, mean = _coverage(draws=200, seed=2026)
    assert 0.91 <= coverage <= 0.99, coverage  # measured: 0.955 (0.934 over 2,000 draws of another seed)
    assert mean == pytest.approx(truth, rel=0.03)  # unbiased: 226.8 ha on average for 222.5 ha true


def test_change_classes_and_estimator_input_errors():
    assert [change_class(*PAIRS[c]) for c in CHANGE_STRATA] == list(CHANGE_STRATA)
    with pytest.raises(InvalidInputError, match="'no_imagery' is not one of"):
        change_class("no_imagery", "mining")
    with pytest.raises(InvalidInputError, match="stratum 'elsewhere'"):
        estimate_change({"new": 1.0}, [("elsewhere", "mining", "mining", 2)])
    areas = {"new": 2.0, "stable": 0.5, "no_mining": 10.0}
    answers = [("new", "not_mining", "mining", 3), ("new", "mining", "mining", 1), ("stable", "mining", "mining", 1)]
    answers += [("no_mining", "not_mining", "not_mining", 4)]
    with pytest.raises(InvalidInputError, match="stratum 'stable' has 1 reviewed sample unit"):
        estimate_change(areas, answers)
    whole = estimate_change(areas, answers, census=["stable"])  # its one cell reviewed: no sampling error there
    assert whole.get("stable").area_ha == pytest.approx(0.5 + 2.0 / 4) and whole.get("new").area_ha == 1.5


def _two_dates(tmp_path):
    """A project scanned at 2019 and 2023 (one AOI, zoom, grid): pits of 2019 plus new ones dug by 2023."""
    truth_before, grids_before = truth_and_grids(seed=7)
    rng = np.random.default_rng(11)
    truth_after, grids_after = {}, {}
    for k, t in truth_before.items():
        dug = t.copy()
        dug[2:7, 3:9] = True  # a new pit in every tile
        truth_after[k] = dug
        prob = np.where(dug, rng.uniform(0.3, 1.0, dug.shape), rng.uniform(0.0, 0.55, dug.shape))
        grids_after[k] = np.round(prob * 255).astype(np.uint8)
    path = tmp_path / "p.db"
    first = build_scan_db(path, grids_before, imagery_date="2019-06-26", aoi=AOI)
    second = build_scan_db(path, grids_after, imagery_date="2023-06-26", aoi=AOI)
    return path, first, second, truth_before, truth_after


def _answer(row, truth_before, truth_after) -> None:
    key, cell = (int(row["z"]), int(row["x"]), int(row["y"])), (int(row["cell_row"]), int(row["cell_col"]))
    row["reference_from"] = "mining" if truth_before[key][cell] else "not_mining"
    row["reference_to"] = "mining" if truth_after[key][cell] else "not_mining"


def test_cli_samples_and_estimates_the_hectares_dug_between_two_dates(tmp_path):
    path, first, second, truth_before, truth_after = _two_dates(tmp_path)
    db, run = ["--db", str(path)], CliRunner().invoke
    r = run(main, ["area", "sample", "--change", "--from-scan", str(first), "--to-scan", str(second), "--n", "120",
                   "--allocation", "equal", "--seed", "5", "--json", *db])  # fmt: skip
    assert r.exit_code == 0, r.output
    sample = json.loads(r.output)
    assert sample["from_scan_id"] == first and sample["scan_id"] == second
    assert {s["stratum"] for s in sample["strata"]} == set(CHANGE_STRATA)
    sheet = tmp_path / "sheet.csv"
    r = run(main, ["area", "export", "--sample", str(sample["sample_id"]), "--format", "csv", "--blind", "-o",
                   str(sheet), *db])  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(sheet.open()))
    assert "reference_class" not in rows[0] and "map_class" not in rows[0] and len(rows) == 120
    for row in rows:
        _answer(row, truth_before, truth_after)
    with sheet.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    r = run(main, ["area", "import-reference", "--sample", str(sample["sample_id"]), str(sheet), *db])
    assert r.exit_code == 0 and "recorded 120" in r.output, r.output

    r = run(main, ["area", "estimate", "--scan", str(second), "--json", *db])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    new = next(c for c in d["classes"] if c["name"] == "new")
    true_new = _true_new_ha(truth_before, truth_after)
    assert d["change"] and (d["from_date"], d["to_date"]) == ("2019-06-26", "2023-06-26")
    assert new["area_interval_ha"][0] <= true_new <= new["area_interval_ha"][1], (new, true_new)
    assert "newly dug" in d["sentence"] and "between 2019-06-26 and 2023-06-26" in d["sentence"]
    r = run(main, ["area", "estimate", "--sample", str(sample["sample_id"]), *db])
    assert r.exit_code == 0 and "change from scan" in r.output and "hectares of land were newly dug" in r.output


def _true_new_ha(truth_before, truth_after) -> float:
    from amberwatch.results.map_units import row_areas_ha

    return sum(
        float((truth_after[k] & ~truth_before[k]).sum(axis=1) @ row_areas_ha(k[0], k[2], GRID_CELLS))
        for k in truth_after
    )


def test_strata_come_from_both_maps_and_no_imagery_at_either_date_replaces_a_unit(tmp_path):
    path, first, second, *_ = _two_dates(tmp_path)
    conn = connect(path)
    survey = survey_change(conn, first, second)
    assert survey.total_cells == 16 * GRID_CELLS**2 and set(survey.strata_present()) == set(CHANGE_STRATA)
    sample = draw_change_sample(conn, first, second, 40, seed=3)
    units = sample_units(conn, sample.sample_id)
    with pytest.raises(InvalidInputError, match="give its class at the earlier date"):
        record_reference(conn, units[0]["unit_id"], "mining", "ana")
    unit = record_reference(conn, units[0]["unit_id"], "mining", "ana", reference_from="no_imagery")
    assert unit["replacement_unit_id"] is not None and len(sample_units(conn, sample.sample_id)) == 41
    assert survey.threshold == THRESHOLD
    bad = tmp_path / "bad.csv"
    bad.write_text(f"unit_id,reference_from,reference_to\n{units[1]['unit_id']},mining,\n")
    with pytest.raises(InvalidInputError, match="line 2: give both reference_from and reference_to"):
        import_reference_csv(conn, sample.sample_id, bad)
    assert "reference_from,reference_to" in export_sample(conn, sample.sample_id, "csv").splitlines()[0]
    with pytest.raises(InvalidInputError, match="stratum 'new' has 0 reviewed"):
        estimate_for_scan(conn, second, sample.sample_id)


def test_mixed_zooms_aois_and_dates_are_refused_naming_the_scans(tmp_path):
    path, first, second, *_ = _two_dates(tmp_path)
    _, grids = truth_and_grids(seed=7)
    zoomed = build_scan_db(path, grids, imagery_date="2024-06-26", aoi=AOI, zoom=17)
    elsewhere = build_scan_db(path, grids, imagery_date="2024-06-26", aoi={**AOI, "coordinates": []})
    undated = build_scan_db(path, grids, aoi=AOI)
    conn = connect(path)
    for a, b, message in [
        (first, zoomed, f"scans {first} (zoom 18) and {zoomed} (zoom 17) mix zooms"),
        (first, elsewhere, f"scans {first} and {elsewhere} cover different AOIs"),
        (first, undated, f"scan {undated} has no imagery date"),
        (second, first, f"scan {second} (2023-06-26) is not earlier than scan {first} (2019-06-26)"),
        (first, first, f"are both scan {first}"),
    ]:
        with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            draw_change_sample(conn, a, b, 20, seed=1)
    db, run = ["--db", str(path)], CliRunner().invoke
    r = run(main, ["area", "sample", "--change", "--from-scan", str(first), "--to-scan", str(zoomed), "--n", "9", *db])
    assert r.exit_code == 1 and "mix zooms" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    r = run(main, ["area", "sample", "--change", "--from-scan", str(first), "--n", "9", *db])
    assert r.exit_code == 2 and "--from-scan and --to-scan" in r.output
    r = run(main, ["area", "sample", "--scan", str(first), "--from-scan", str(second), "--n", "9", *db])
    assert r.exit_code == 2 and "--change with --from-scan" in r.output


def test_an_area_schema_of_version_1_upgrades_with_its_samples_one_date(tmp_path):
    conn = connect(tmp_path / "old.db")
    migrate_component(conn, Component("area", MIGRATIONS[:1], requires=(RESULTS_SCHEMA,)))
    conn.execute(
        "INSERT INTO scans (id, aoi_geojson, imagery, imagery_source_id, zoom, model_version, model_threshold,"
        " status, started_at) VALUES (1, '{}', 't', 't', 18, 'v', 0.5, 'finished', 'now')"
    )
    conn.execute(
        "INSERT INTO area_samples (id, scan_id, created_at, seed, allocation, n_requested, model_threshold,"
        " mapping_rule, total_cells, total_area_ha) VALUES (1, 1, 'now', 1, 'equal', 4, 0.5, 'r', 9, 1.0)"
    )
    ensure_area_schema(conn)
    old = find_sample(conn, 1)
    assert old is not None and old.from_scan_id is None and not old.is_change


@pytest.mark.slow
def test_change_sample_on_a_project_scanned_at_two_dates_of_real_imagery(tile_server, tmp_path):
    from tests.scan.conftest import put_image_tiles, texty_image, tile_origin, tiles_bbox, write_aoi

    x0, y0 = tile_origin()
    aoi, db = write_aoi(tmp_path / "aoi.geojson", tiles_bbox(x0, y0, 3, 3)), tmp_path / "p.db"
    run = CliRunner().invoke
    for date, image in (("2019-06-26", "negative1"), ("2023-06-26", "positive1")):  # pits dug between the dates
        put_image_tiles(tile_server, texty_image(image), x0, y0, 3, 3)
        args = ["scan", "--aoi", str(aoi), "--imagery", tile_server.url, "--zoom", "18", "--db", str(db)]
        r = run(main, [*args, "--workers", "1", "--no-progress", "--imagery-date", date], catch_exceptions=False)
        assert r.exit_code == 0, r.output
    sample_args = ["--from-scan", "1", "--to-scan", "2", "--n", "30", "--allocation", "equal", "--seed", "4"]
    r = run(main, ["area", "sample", "--change", *sample_args, "--json", "--db", str(db)])
    assert r.exit_code == 0, r.output
    sample = json.loads(r.output)
    mapped = {s["stratum"]: s["area_ha"] for s in sample["strata"]}
    assert mapped.get("new", 0) > 0, mapped
    sheet = tmp_path / "sheet.csv"
    r = run(main, ["area", "export", "--sample", str(sample["sample_id"]), "--format", "csv", "-o", str(sheet),
                   "--db", str(db)])  # fmt: skip
    rows = list(csv.DictReader(sheet.open()))
    for row in rows:  # a reviewer agreeing with both maps everywhere
        row["reference_from"], row["reference_to"] = PAIRS[row["stratum"]]
    with sheet.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert run(main, ["area", "import-reference", "--sample", str(sample["sample_id"]), str(sheet), "--db", str(db)])
    r = run(main, ["area", "estimate", "--scan", "2", "--json", "--db", str(db)])
    assert r.exit_code == 0, r.output
    new = next(c for c in json.loads(r.output)["classes"] if c["name"] == "new")
    assert new["area_ha"] == pytest.approx(mapped["new"]) and new["users_accuracy"] == 1.0
