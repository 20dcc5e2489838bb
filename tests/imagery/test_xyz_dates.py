"""URL templates with {date} / {time}: filled from the imagery date, which then also dates the source id."""

from __future__ import annotations

import pytest

from amberwatch.errors import InvalidInputError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.open import open_source

from .conftest import tile_png


def test_date_placeholder_is_filled_from_the_imagery_date(tile_server, cache: TileCache) -> None:
    tile_server.tiles[(3, 1, 2)] = tile_png(5)
    template = f"{tile_server.base}/mosaic/{{date}}/{{z}}/{{x}}/{{y}}.png"
    with (
        open_source(template, cache=cache, imagery_date="2021-03-04") as a,
        open_source(template, cache=cache, imagery_date="2022-05-06") as b,
    ):
        assert a.read_tile(3, 1, 2) is not None and b.read_tile(3, 1, 2) is not None
        assert a.source_id.endswith("@2021-03-04") and b.source_id.endswith("@2022-05-06")
        assert a.source_id.split("@")[0] == b.source_id.split("@")[0]  # one source, two dates
    assert tile_server.tile_requests() == ["/mosaic/2021-03-04/3/1/2.png", "/mosaic/2022-05-06/3/1/2.png"]


def test_time_placeholder_takes_the_imagery_date_or_release_as_given(tile_server, cache: TileCache) -> None:
    tile_server.tiles[(3, 1, 2)] = tile_png(6)
    with open_source(f"{tile_server.base}/{{time}}/{{z}}/{{x}}/{{y}}.png", cache=cache, imagery_date="2020-06") as s:
        assert s.read_tile(3, 1, 2) is not None
    assert tile_server.tile_requests() == ["/2020-06/3/1/2.png"]


@pytest.mark.parametrize(
    ("template", "imagery_date", "says"),
    [
        ("http://127.0.0.1:9/{date}/{z}/{x}/{y}.png", None, "has {date}: give the imagery date"),
        ("http://127.0.0.1:9/{time}/{z}/{x}/{y}.png", None, "has {time}: give the imagery date"),
        ("http://127.0.0.1:9/{date}/{z}/{x}/{y}.png", "2021-06", "needs an imagery date YYYY-MM-DD, not '2021-06'"),
        ("http://127.0.0.1:9/{date}/{z}/{x}/{y}.png", "r12", "needs an imagery date YYYY-MM-DD, not 'r12'"),
    ],
)
def test_a_dated_template_without_a_fitting_date_is_a_one_line_error_naming_it(template, imagery_date, says) -> None:
    with pytest.raises(InvalidInputError) as err:
        open_source(template, imagery_date=imagery_date)
    message = str(err.value)
    assert says in message and template in message and "\n" not in message
