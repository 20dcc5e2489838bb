"""The one basemap resolver (imagery.basemap): the map's config and the story's settings come from it."""

from __future__ import annotations

import pytest

from amberwatch.errors import InvalidInputError
from amberwatch.imagery.basemap import resolve_basemap, tile_origins
from amberwatch.web.layers import basemap_config


def test_one_preset_gives_the_story_and_the_map_the_same_basemap():
    osm = resolve_basemap("OpenStreetMap.Mapnik")
    assert osm.url == "https://tile.openstreetmap.org/{z}/{x}/{y}.png" and osm.max_zoom == 19
    assert "OpenStreetMap" in osm.attribution and "<a " in osm.attribution_html and "<" not in osm.attribution
    config = basemap_config("OpenStreetMap.Mapnik")
    assert (config["name"], config["url"], config["attribution"]) == (osm.name, osm.url, osm.attribution_html)
    assert config["origin"] == tile_origins(osm)[0]


def test_subdomains_and_retina_placeholder():
    topo = resolve_basemap("OpenTopoMap")
    assert topo.subdomains is None and tile_origins(topo)[1] == "https://b.tile.opentopomap.org"
    assert basemap_config("OpenTopoMap")["origin"] == "https://*.tile.opentopomap.org"
    carto = resolve_basemap("Stadia.OSMBright")
    assert "{r}" in carto.url and "{r}" not in basemap_config("Stadia.OSMBright")["url"]


@pytest.mark.parametrize(
    ("name", "why"), [("Nope.Nothing", "not an xyzservices preset"), ("Thunderforest.OpenCycleMap", "API key")]
)
def test_unknown_or_keyed_presets_are_refused_by_name(name, why):
    with pytest.raises(InvalidInputError, match=why):
        resolve_basemap(name)
