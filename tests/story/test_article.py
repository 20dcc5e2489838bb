"""Article files: front matter fields, fragment choices, map view, and errors that name the bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from amberwatch.errors import AmberwatchWarning, InvalidInputError, NotFoundError
from amberwatch.imagery.basemap import resolve_basemap, tile_origins
from amberwatch.story.article import read_article

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, front: str, body: str = "Some text.\n") -> Path:
    p = tmp_path / "a.md"
    p.write_text(f"---\n{front}\n---\n{body}", "utf-8")
    return p


def test_example_article_parses() -> None:
    a = read_article(REPO / "examples" / "story.md")
    assert a.title.startswith("The lunar landscape")
    assert a.fragments.rank_by == "largest" and a.fragments.count == 12
    assert a.map_view.center_lat_lon is None
    assert "going to the amber" in a.body_markdown


def test_full_front_matter(tmp_path: Path) -> None:
    a = read_article(
        _write(
            tmp_path,
            'title: T\nlead: L\nbyline: B\ndate: 2026-01-02\nfragments: [3, {id: 5, place: "Klesiv"}]\n'
            "map: {center: [51.3, 26.9], zoom: 13}\nplaces: {3: Rafalivka}\nlang: uk",
        )
    )
    assert (a.title, a.lead, a.byline, a.date) == ("T", "L", "B", "2026-01-02")
    assert a.fragments.ids == (3, 5)
    assert a.places == {3: "Rafalivka", 5: "Klesiv"}
    assert a.lang == "uk"
    assert a.map_view.center_lat_lon == (51.3, 26.9) and a.map_view.zoom == 13


def test_most_confident(tmp_path: Path) -> None:
    a = read_article(_write(tmp_path, "title: T\nfragments: most confident 5"))
    assert a.fragments.rank_by == "most confident" and a.fragments.count == 5


@pytest.mark.parametrize(
    ("front", "named"),
    [
        ("title: T\nfragments: biggest 3", "biggest 3"),
        ("title: T\nfragments: [1, x]", "'x'"),
        ("title: T\nfragments: [1, 1]", "fragment id 1"),
        ("title: T\nfragments: largest 0", "largest 0"),
        ("title: T\nmap: {center: [95, 10], zoom: 3}", "[95, 10]"),
        ("title: T\nmap: {center: [50, 10]}", "needs both"),
        ("title: T\nmap: {zoom: 40, center: [50, 10]}", "40"),
        ("lead: no title", "'title'"),
        ("title: T\nlang: 'en gb'", "'en gb'"),
        ("title: [a, b]", "['a', 'b']"),
        ("title: T\nfragments: {x: 1}", "{'x': 1}"),
        ("title: T\n  bad: : indentation", "not valid YAML"),
    ],
)
def test_bad_front_matter_is_named(tmp_path: Path, front: str, named: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        read_article(_write(tmp_path, front))
    assert named in str(info.value)
    assert "a.md" in str(info.value)


def test_unknown_keys_warn_and_title_from_heading(tmp_path: Path) -> None:
    with pytest.warns(AmberwatchWarning, match="colour"):
        a = read_article(_write(tmp_path, "colour: red\nfragments: largest 3", body="# The heading\n\nText.\n"))
    assert a.title == "The heading"
    assert "The heading" not in a.body_markdown and "Text." in a.body_markdown


def test_missing_or_empty_articles(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"nope.md"):
        read_article(tmp_path / "nope.md")
    p = tmp_path / "plain.md"
    p.write_text("# No front matter\n", "utf-8")
    with pytest.raises(InvalidInputError, match="no YAML front matter"):
        read_article(p)
    with pytest.raises(InvalidInputError, match="no text"):
        read_article(_write(tmp_path, "title: T", body="\n  \n"))


def test_basemap_preset(tmp_path: Path) -> None:
    assert read_article(_write(tmp_path, "title: T")).basemap is None  # off by default
    assert read_article(_write(tmp_path, "title: T\nbasemap: off")).basemap is None
    b = read_article(_write(tmp_path, "title: T\nbasemap: Esri.WorldImagery")).basemap
    assert b is not None and b.name == "Esri.WorldImagery"
    assert b.url.startswith("https://server.arcgisonline.com/") and "{z}/{y}/{x}" in b.url
    assert b.attribution.startswith("Tiles © Esri")
    with pytest.raises(InvalidInputError, match=r"a\.md.*basemap 'Esri\.Nowhere' is not an xyzservices preset"):
        read_article(_write(tmp_path, "title: T\nbasemap: Esri.Nowhere"))
    with pytest.raises(InvalidInputError, match=r"basemap \[1, 2\] must be an xyzservices preset name"):
        read_article(_write(tmp_path, "title: T\nbasemap: [1, 2]"))


def test_basemap_tile_origins() -> None:
    """The CSP allows exactly the hosts Leaflet asks for tiles: one per subdomain ('abc' when the preset names none)."""
    assert tile_origins(resolve_basemap("OpenStreetMap.Mapnik")) == ("https://tile.openstreetmap.org",)
    assert tile_origins(resolve_basemap("OpenTopoMap")) == tuple(f"https://{s}.tile.opentopomap.org" for s in "abc")
