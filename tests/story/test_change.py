"""Change over time in the story: the pairs' sites, the headline figures and the then-and-now section of the page."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from shapely.geometry import Point

from amberwatch.cli import main
from amberwatch.db import connect
from amberwatch.errors import InvalidInputError, NotFoundError
from amberwatch.imagery.decode import read_image_file
from amberwatch.results.timeline import Site, Timeline, load_timeline
from amberwatch.story.captions import format_total_hectares, headline_text
from amberwatch.story.change import ChangeChoice, headline_figures, load_change, select_pair_sites, site_change
from tests.story.conftest import NOW, THEN, DatedFixture, StoryFixture, write_article


def _site(site_id: int, areas: dict[str, float | None]) -> Site:
    return Site(site_id, 0.0, 0.0, THEN, NOW, "unknown", areas, (site_id,), Point(0, 0))


def _timeline(*sites: Site) -> Timeline:
    return Timeline((THEN, "2021-01-01", NOW), (1, 2, 3), sites)


def test_figures_count_new_sites_and_the_growth_of_growing_ones() -> None:
    timeline = _timeline(
        _site(1, {THEN: 0.0, NOW: 2.0}),  # new: 2 ha dug
        _site(2, {THEN: 1.0, NOW: 1.5}),  # grew by half: 0.5 ha dug
        _site(3, {THEN: 1.0, NOW: 1.1}),  # within the tolerance: stable, nothing dug
        _site(4, {THEN: 3.0, NOW: 1.0}),  # shrinking: nothing dug, nothing subtracted
        _site(5, {THEN: None, NOW: 9.0}),  # no imagery then: left out
        _site(6, {THEN: 0.0, NOW: None}),  # no imagery now: left out
    )
    h = headline_figures(timeline, THEN, NOW)
    assert (h.n_new, h.dug_ha, h.then, h.now) == (1, pytest.approx(2.5), THEN, NOW)
    assert site_change(timeline.sites[4], THEN, NOW) is None
    assert [c.kind for c in (site_change(s, THEN, NOW) for s in timeline.sites[:4])] == [
        "new",
        "growing",
        "stable",
        "shrinking",
    ]
    # Between the middle date and NOW the same sites tell another story: site 1 was already there.
    middle = _timeline(_site(1, {THEN: 0.0, "2021-01-01": 1.9, NOW: 2.0}))
    assert headline_figures(middle, "2021-01-01", NOW).n_new == 0


def test_pairs_are_the_sites_with_most_hectares_dug_unless_named() -> None:
    timeline = _timeline(
        _site(1, {THEN: 0.0, NOW: 0.4}), _site(2, {THEN: 1.0, NOW: 3.0}), _site(3, {THEN: 1.0, NOW: 1.0})
    )
    assert [c.site.site_id for c in select_pair_sites(timeline, THEN, NOW, ChangeChoice())] == [2, 1]
    assert [c.site.site_id for c in select_pair_sites(timeline, THEN, NOW, ChangeChoice(count=1))] == [2]
    named = select_pair_sites(timeline, THEN, NOW, ChangeChoice(site_ids=(3, 1)))
    assert [(c.site.site_id, c.kind) for c in named] == [(3, "stable"), (1, "new")]
    with pytest.raises(NotFoundError, match="site 7 "):
        select_pair_sites(timeline, THEN, NOW, ChangeChoice(site_ids=(7,)))


def test_totals_round_like_the_map() -> None:
    # web/static/common.js ha(): two decimals below 100 ha, none from 100 ha.
    assert [format_total_hectares(v) for v in (0.004, 0.425, 3.1, 99.996, 100.0, 127.5)] == [
        "0.00",
        "0.42",
        "3.10",
        "100.00",
        "100",
        "128",
    ]
    assert headline_text(1, 0.5, THEN) == "1 new site, 0.50 ha dug since 26 Jun 2019"
    assert headline_text(1200, 1234.4, THEN) == "1,200 new sites, 1234 ha dug since 26 Jun 2019"


def _load(db: Path, choice: ChangeChoice):
    conn = connect(db)
    try:
        return load_change(conn, None, choice)
    finally:
        conn.close()


def test_the_dated_project_gives_figures_and_pairs(dated_data: DatedFixture) -> None:
    a = dated_data.area_ha
    change = _load(dated_data.db, ChangeChoice())
    assert change is not None
    assert (change.then_scan.imagery_date, change.now_scan.imagery_date) == (THEN, NOW)
    dug = a["A1"][NOW] + a["A2"][NOW] + a["B1"][NOW] - a["B1"][THEN]
    assert (change.headline.n_new, change.headline.dug_ha) == (2, pytest.approx(dug))
    by_dug = sorted(["A1", "A2", "B1"], key=lambda k: -(a[k][NOW] - a[k].get(THEN, 0.0)))[:2]
    assert [p.now_detections[0].id for p in change.pairs] == [dated_data.now_ids[k] for k in by_dug]
    grown = next(p for p in change.pairs if p.change.kind == "growing")
    assert len(grown.then_detections) == 1 and grown.then_detections[0].scan_id == change.then_scan.id


def test_dates_and_sites_are_checked(dated_data: DatedFixture) -> None:
    with pytest.raises(InvalidInputError, match=r"--then '2020-01-01' .*2019-06-26, 2023-06-26"):
        _load(dated_data.db, ChangeChoice(then="2020-01-01"))
    with pytest.raises(InvalidInputError, match="earlier"):
        _load(dated_data.db, ChangeChoice(then=NOW, now=THEN))
    conn = connect(dated_data.db)
    try:
        timeline = load_timeline(conn, {})
    finally:
        conn.close()
    stable = next(s for s in timeline.sites if s.status == "stable")
    change = _load(dated_data.db, ChangeChoice(site_ids=(stable.site_id,)))
    assert [p.change.kind for p in change.pairs] == ["stable"]
    with pytest.raises(NotFoundError, match="site 99999 "):
        _load(dated_data.db, ChangeChoice(site_ids=(99999,)))


def test_an_undated_project_has_no_change_unless_asked(story_data: StoryFixture) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _load(story_data.db, ChangeChoice()) is None
    with pytest.raises(InvalidInputError, match="cannot show change over time"):
        _load(story_data.db, ChangeChoice(count=1))


def _largest(site: Path, stem: str) -> np.ndarray:
    """The pixels of the largest size written of a pair's half."""
    files = sorted(site.glob(f"fragments/{stem}-*.webp"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return read_image_file(files[-1])


def _data(folder: Path) -> dict:
    text = (folder / "data.js").read_text("utf-8")
    return json.loads(text[len("window.AMBER_STORY = ") :].rstrip().rstrip(";"))


def test_the_page_shows_the_figures_the_rule_and_both_halves_of_each_pair(dated_story, dated_data) -> None:
    site = dated_story.index_html.parent
    page = dated_story.index_html.read_text("utf-8")
    change = _load(dated_data.db, ChangeChoice())
    assert dated_story.headline == headline_text(change.headline.n_new, change.headline.dug_ha, THEN)
    assert f'<p class="change-headline">{dated_story.headline}</p>' in page
    assert "hectares dug are the area of the new sites plus the growth" in page  # the rule, in the methods note
    assert dated_story.pair_ids == tuple(p.now_detections[0].id for p in change.pairs)
    fragments = {f["id"]: f for f in _data(site)["fragments"]}
    fragment_ids = {int(m) for m in re.findall(r'<figure class="frag" id="frag-(\d+)"', page)}
    assert len(fragment_ids) == 1 and len(fragments) == 1 + len(change.pairs) - len(fragment_ids & set(fragments))
    for pair in change.pairs:
        sid, key = pair.now_detections[0].id, pair.change.site.site_id
        assert f'<figure class="pair" id="pair-{sid}" data-site="{sid}">' in page
        assert fragments[sid]["caption"].startswith(f"{pair.now_detections[0].place}")
        then_px = _largest(site, f"pair-{key}-then")
        now_px = _largest(site, f"pair-{key}-now")
        assert then_px.shape == now_px.shape  # one crop box at both dates
        cyan = lambda px: int(np.count_nonzero((px[..., 0] < 60) & (px[..., 1] > 180) & (px[..., 2] > 200)))  # noqa: E731
        assert cyan(now_px) > 50 and cyan(then_px) < cyan(now_px) // 10  # the outline on NOW only
        # Every pair is clickable to the map: a site that is no fragment lands there with its NOW image.
        assert fragments[sid]["overlay"].startswith(f"fragments/{'site' if sid in fragment_ids else 'pair'}-")
    new_pair = next(p for p in change.pairs if p.change.kind == "new")
    key = new_pair.change.site.site_id
    then_px = _largest(site, f"pair-{key}-then").astype(float)
    now_px = _largest(site, f"pair-{key}-now").astype(float)
    assert np.abs(then_px - now_px).mean() > 10  # forest then, pits now: each date's own imagery


def test_an_undated_story_has_no_change_section(built_story: Path) -> None:
    page = (built_story / "index.html").read_text("utf-8")
    assert 'class="change"' not in page and '</header>\n<div class="story-body">' in page
    assert not list((built_story / "fragments").glob("pair-*"))
    assert "Change over time" not in page


def test_cli_takes_the_dates_and_the_pairs(dated_data: DatedFixture, tmp_path: Path) -> None:
    article = write_article(tmp_path, "largest 2")
    args = ["story", "build", str(article), "--db", str(dated_data.db), "--out", str(tmp_path / "site")]
    result = CliRunner().invoke(main, [*args, "--then", THEN, "--now", NOW, "--pairs", "1"])
    assert result.exit_code == 0, result.output
    assert "Then and now: 2 new sites" in result.output and "(1 pair)" in result.output
    result = CliRunner().invoke(main, [*args, "--then", "2001-01-01"])
    assert result.exit_code != 0 and "'2001-01-01'" in result.output
