"""Sites across dates: matching by overlap (split, merge), statuses, 0 versus null, and the choice of scans."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from shapely.geometry import box

from amberwatch.cli import main
from amberwatch.errors import InvalidInputError, NotFoundError
from amberwatch.results.public import ReviewState
from amberwatch.results.timeline import DatedLayer, Outline, load_timeline, match_sites, site_status
from tests.results.timeline_db import add_scan, open_db, tile_box


def _everywhere(lon: float, lat: float) -> bool:
    return True


def _layer(date: str, *outlines: tuple[int, object, float], has_imagery=_everywhere) -> DatedLayer:
    return DatedLayer(date, 0, [Outline(i, g, a) for i, g, a in outlines], has_imagery)


def test_a_field_that_splits_then_merges_stays_one_site():
    big, left, right = box(0, 0, 10, 4), box(0, 0, 4.5, 4), box(5.5, 0, 10, 4)
    sites = match_sites(
        [
            _layer("2018", (1, big, 10.0)),
            _layer("2020", (2, left, 4.0), (3, right, 4.5)),
            _layer("2022", (4, box(0, 0, 10, 5), 12.0)),
        ]
    )
    assert len(sites) == 1
    s = sites[0]
    assert s.detection_ids == (1, 2, 3, 4) and s.site_id == 1
    assert dict(s.area_ha) == {"2018": 10.0, "2020": 8.5, "2022": 12.0}
    assert (s.first_seen, s.last_seen, s.status) == ("2018", "2022", "growing")


def test_touching_edges_do_not_join_sites_and_separate_places_stay_apart():
    sites = match_sites([_layer("2018", (1, box(0, 0, 1, 1), 1.0)), _layer("2020", (2, box(1, 0, 2, 1), 1.0))])
    assert sorted((s.site_id, s.status) for s in sites) == [(1, "gone"), (2, "new")]
    gone = next(s for s in sites if s.site_id == 1)
    assert dict(gone.area_ha) == {"2018": 1.0, "2020": 0.0} and gone.last_seen == "2018"


@pytest.mark.parametrize(
    ("areas", "status"),
    [
        ([0.0, 0.0, 2.0], "new"),
        ([None, 0.0, 2.0], "new"),
        ([1.0, 2.0, 2.5], "growing"),  # +25 % between the last two dates
        ([5.0, 2.0, 2.3], "stable"),  # +15 %: within the 20 % tolerance
        ([2.0, 2.0, 1.5], "shrinking"),
        ([2.0, 2.0, 0.0], "gone"),
        ([2.0, 0.0, None], "gone"),  # nothing at the last date its place has imagery
        ([2.0, 3.0, None], "growing"),  # the latest date has no imagery there: the last two with imagery count
        ([1.0, 0.0, 1.0], "growing"),  # back after a date with nothing
        ([None, None, 3.0], "unknown"),  # imagery at one date only: nothing to compare with
    ],
)
def test_status_compares_the_last_two_dates_with_imagery(areas, status):
    assert site_status(areas) == status


def test_a_date_without_imagery_at_the_place_is_null_and_with_imagery_zero():
    field = box(0, 0, 2, 2)
    sites = match_sites(
        [
            _layer("2016", has_imagery=lambda lon, lat: False),
            _layer("2018", has_imagery=_everywhere),
            _layer("2020", (7, field, 3.0)),
        ]
    )
    assert [dict(s.area_ha) for s in sites] == [{"2016": None, "2018": 0.0, "2020": 3.0}]
    assert sites[0].status == "new" and sites[0].first_seen == sites[0].last_seen == "2020"


def test_coverage_comes_from_the_done_tiles_and_their_valid_cells(tmp_path):
    conn = open_db(tmp_path / "p.db")
    half = bytes([1] * 32 + [0] * 32)  # the tile's top four rows of cells have imagery, the bottom four none
    add_scan(conn, "2018-06-01", [], tiles=[(0, 0), (1, 0)], valid={(1, 0): half})
    add_scan(conn, "2020-06-01", [(tile_box(0, 0), 2.0), (tile_box(1, 0, 0.3), 1.0), (tile_box(2, 0), 1.5)])
    add_scan(conn, "2022-06-01", [(tile_box(0, 0), 2.1)], tiles=[(0, 0), (1, 0), (2, 0)])
    t = load_timeline(conn, {})
    assert t.dates == ("2018-06-01", "2020-06-01", "2022-06-01")
    by_id = {s["site_id"]: s["area_ha"] for s in t.to_dict()["sites"]}
    assert sorted(by_id.values(), key=lambda a: a["2020-06-01"]) == [
        {"2018-06-01": None, "2020-06-01": 1.0, "2022-06-01": 0.0},  # in tile (1, 0), in its cells without imagery
        {"2018-06-01": None, "2020-06-01": 1.5, "2022-06-01": 0.0},  # tile (2, 0) was not scanned in 2018
        {"2018-06-01": 0.0, "2020-06-01": 2.0, "2022-06-01": 2.1},
    ]


def test_scans_of_one_aoi_are_one_per_date_and_undated_ones_are_left_out_with_a_note(tmp_path):
    conn = open_db(tmp_path / "p.db")
    add_scan(conn, None, [(tile_box(0, 0), 1.0)])
    first = add_scan(conn, "2018", [(tile_box(0, 0), 1.0)])
    add_scan(conn, "2020", [(tile_box(0, 0), 1.0)], finished=False)  # running: not part of the timeline
    second = add_scan(conn, "2021", [(tile_box(0, 0), 1.0)])
    t = load_timeline(conn, {})
    assert t.scan_ids == (first, second) and t.dates == ("2018", "2021")
    assert t.notes and "without an imagery date" in t.notes[0] and "scan 1" in t.notes[0]
    assert [s.status for s in t.sites] == ["stable"]


def test_bad_choices_are_one_line_errors_naming_the_scans(tmp_path):
    conn = open_db(tmp_path / "p.db")
    one = add_scan(conn, "2018", [(tile_box(0, 0), 1.0)])
    with pytest.raises(InvalidInputError, match=r"two or more imagery dates; dated: scan 1 \(2018, zoom 18"):
        load_timeline(conn, {})
    with pytest.raises(NotFoundError, match="scan 99 does not exist"):
        load_timeline(conn, {}, scan_ids=[one, 99])
    other = add_scan(conn, "2020", [(tile_box(0, 0), 1.0)], zoom=17)
    with pytest.raises(InvalidInputError, match=r"mix zooms or models: .*zoom 18.*zoom 17.*--scans"):
        load_timeline(conn, {})
    picked = load_timeline(conn, {}, scan_ids=[other, one])  # picked by hand: allowed, and stated
    assert picked.dates == ("2018", "2020") and "mix zooms or models" in picked.notes[0]
    undated = add_scan(conn, None, [])
    with pytest.raises(InvalidInputError, match=f"scan {undated} has no imagery date: .*--imagery-date"):
        load_timeline(conn, {}, scan_ids=[one, undated])


def _run(*args: str):
    return CliRunner().invoke(main, ["timeline", *args])


def test_cli_json_csv_geojson_and_one_line_errors(tmp_path):
    db = tmp_path / "p.db"
    conn = open_db(db)
    add_scan(conn, "2019-05-01", [(tile_box(0, 0), 1.0)])
    result = _run("--db", str(db), "--json")
    assert result.exit_code == 1 and "two or more imagery dates" in result.output
    assert len(result.output.strip().splitlines()) == 1
    add_scan(conn, "2021-05-01", [(tile_box(0, 0), 1.5), (tile_box(2, 2), 0.7)])
    conn.close()
    out_csv, out_geojson = tmp_path / "t.csv", tmp_path / "t.geojson"
    result = _run("--db", str(db), "--json", "--csv", str(out_csv), "--geojson", str(out_geojson))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dates"] == ["2019-05-01", "2021-05-01"]
    assert [(s["status"], s["area_ha"]) for s in data["sites"]] == [
        ("new", {"2019-05-01": 0.0, "2021-05-01": 0.7}),
        ("growing", {"2019-05-01": 1.0, "2021-05-01": 1.5}),
    ]
    assert set(data["sites"][0]) == {"site_id", "lat", "lon", "first_seen", "last_seen", "status", "area_ha"}
    assert out_csv.read_text().splitlines()[0].endswith("area_ha_2019-05-01,area_ha_2021-05-01")
    assert len(json.loads(out_geojson.read_text())["features"]) == 2
    for args, message in [
        (("--scans", "1,99"), "scan 99 does not exist"),
        (("--scans", "1,x"), "must be scan ids separated by commas"),
    ]:
        result = _run("--db", str(db), "--json", *args)
        assert result.exit_code in (1, 2) and message in result.output, result.output
    table = _run("--db", str(db))
    assert table.exit_code == 0 and "2 sites over 2 dates" in table.output and "1 new, 1 growing" in table.output


def test_sites_reviewed_as_not_mining_are_left_out_unless_asked(tmp_path):
    conn = open_db(tmp_path / "p.db")
    add_scan(conn, "2018", [(tile_box(0, 0), 1.0), (tile_box(2, 2), 2.0)])
    add_scan(conn, "2020", [(tile_box(0, 0), 1.0), (tile_box(2, 2), 2.0)])
    rejected = {4: ReviewState("not_mining")}  # the 2020 outline in tile (2, 2): scan 2's detections are 3 and 4
    # the review follows the site to its same outline of 2018 (results.public.follow_reviews): the site is gone
    assert [dict(s.area_ha) for s in load_timeline(conn, rejected).sites] == [{"2018": 1.0, "2020": 1.0}]
    assert {s.status for s in load_timeline(conn, rejected, include_removed=True).sites} == {"stable"}
    assert len(load_timeline(conn, rejected, include_removed=True).sites) == 2
