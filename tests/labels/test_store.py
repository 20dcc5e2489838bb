"""The example store API: add, get, pixels, list, exclude, stats, fingerprint, migrations."""

from __future__ import annotations

import io
import json
import math
import sqlite3

import numpy as np
import pytest
from PIL import Image

from amberwatch.db import connect, schema_version
from amberwatch.errors import AOIError, ConflictError, ImageError, InvalidInputError, NotFoundError
from amberwatch.imagery.decode import encode_jpeg, encode_png
from amberwatch.labels.store import MIGRATIONS, Example, ExampleStore, ensure_schema, pixel_sha256

from .conftest import make_pixels


def test_add_png_bytes_and_read_back(store: ExampleStore) -> None:
    pixels = make_pixels(1)
    ex_id, created = store.add(
        encode_png(pixels),
        "mining",
        lon=26.1,
        lat=51.3,
        imagery_date="2015-03-09",
        source="texty",
        source_image="51.3_26.1",
        added_by="alice",
    )
    assert created
    ex = store.get(ex_id)
    assert isinstance(ex, Example)
    assert (ex.label, ex.lon, ex.lat, ex.imagery_date, ex.source, ex.source_image, ex.added_by) == (
        "mining",
        26.1,
        51.3,
        "2015-03-09",
        "texty",
        "51.3_26.1",
        "alice",
    )
    assert (ex.width, ex.height, ex.status, ex.exclude_reason) == (32, 24, "active", None)
    assert ex.sha256 == pixel_sha256(pixels)
    np.testing.assert_array_equal(store.pixels(ex_id), pixels)
    assert store.pixels(ex_id).dtype == np.uint8


def test_same_pixels_twice_is_one_example(store: ExampleStore) -> None:
    pixels = make_pixels(3)
    a = store.add(encode_png(pixels), "not_mining", category="forest")
    b = store.add(pixels, "not_mining")  # array of the same pixels
    assert a == (a[0], True) and b == (a[0], False)
    assert len(store.examples()) == 1


def test_same_pixels_other_label_conflicts(store: ExampleStore) -> None:
    pixels = make_pixels(4)
    ex_id, _ = store.add(pixels, "mining")
    with pytest.raises(ConflictError, match=f"example {ex_id}"):
        store.add(pixels, "not_mining")
    assert store.get(ex_id).label == "mining"


def test_excluded_example_relabelled_is_reactivated(store: ExampleStore) -> None:
    pixels = make_pixels(8)
    ex_id, _ = store.add(pixels, "mining", source="label-page", added_by="ann")
    store.exclude(ids=[ex_id], reason="label undone")
    assert store.add(pixels, "mining") == (ex_id, False)
    assert store.get(ex_id).status == "excluded"  # same label: stays as it was
    assert store.add(pixels, "not_mining", category="snow", added_by="bob") == (ex_id, True)
    ex = store.get(ex_id)
    assert (ex.label, ex.category, ex.status, ex.exclude_reason, ex.added_by) == (
        "not_mining",
        "snow",
        "active",
        None,
        "bob",
    )


def test_pixel_hash_matches_model_fingerprint_recipe(store: ExampleStore) -> None:
    """A folder of chips and the same chips in the store get the same training-data fingerprint."""
    chips_fingerprint = getattr(pytest.importorskip("amberwatch.model.dataset"), "chips_fingerprint", None)
    if chips_fingerprint is None:
        pytest.skip("amberwatch.model.dataset has no chips_fingerprint")
    chips = [make_pixels(1), make_pixels(2, 5, 7)]
    store_fp = store.fingerprint([_example(pixel_sha256(c), "mining") for c in chips])
    assert store_fp == chips_fingerprint(chips, np.array([1, 1]))


def _example(sha: str, label: str) -> Example:
    return Example(
        id=0,
        sha256=sha,
        label=label,
        category=None,
        lon=None,
        lat=None,
        imagery_date=None,
        source="t",
        source_image=None,
        added_by="t",
        added_at="t",
        status="active",
        exclude_reason=None,
        width=1,
        height=1,
    )


def test_rgba_and_grayscale_arrays_from_bytes(store: ExampleStore) -> None:
    buf = io.BytesIO()
    Image.fromarray(make_pixels(5)[:, :, 0]).save(buf, format="PNG")
    ex_id, created = store.add(buf.getvalue(), "not_mining")
    assert created and store.pixels(ex_id).shape == (24, 32, 3)
    ex_id2, _ = store.add(encode_jpeg(make_pixels(6)), "not_mining")
    assert store.get(ex_id2).width == 32


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"label": "pits"}, "'pits'"),
        ({"label": "not_mining", "category": "lake"}, "'lake'"),
        ({"label": "mining", "imagery_date": "09 Mar 2015"}, "'09 Mar 2015'"),
        ({"label": "mining", "lon": 200.0, "lat": 50.0}, "200"),
        ({"label": "mining", "lon": 26.0}, "both lon and lat"),
    ],
)
def test_add_rejects_bad_values_naming_them(store: ExampleStore, kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        store.add(make_pixels(7), **kwargs)
    assert store.examples(status=None) == []


def test_add_rejects_bad_images(store: ExampleStore) -> None:
    with pytest.raises(ImageError, match="empty"):
        store.add(b"", "mining", name="empty.png")
    with pytest.raises(ImageError, match=r"x.png"):
        store.add(b"hello, not a png", "mining", name="x.png")
    with pytest.raises(ImageError, match="HxWx3"):
        store.add(np.zeros((4, 4, 4), dtype=np.uint8), "mining")


def test_get_unknown_id_is_not_found(store: ExampleStore) -> None:
    with pytest.raises(NotFoundError, match="42"):
        store.get(42)
    with pytest.raises(NotFoundError, match="42"):
        store.pixels(42)


def test_examples_filters_and_iter_pixels(store: ExampleStore) -> None:
    ids = [store.add(make_pixels(10 + i), "mining" if i % 2 else "not_mining")[0] for i in range(6)]
    assert [e.id for e in store.examples()] == ids
    assert [e.id for e in store.examples(label="mining")] == ids[1::2]
    store.exclude(ids=[ids[0]], reason="blurry")
    assert [e.id for e in store.examples(status="excluded")] == [ids[0]]
    assert len(store.examples(status=None)) == 6
    with pytest.raises(InvalidInputError, match="'gone'"):
        store.examples(status="gone")
    pairs = list(store.iter_pixels(store.examples(label="mining")))
    assert [e.id for e, _ in pairs] == ids[1::2]
    np.testing.assert_array_equal(pairs[0][1], make_pixels(11))


def test_block_key() -> None:
    base = dict(
        id=1,
        sha256="ab",
        label="mining",
        category=None,
        imagery_date=None,
        source="t",
        added_by="x",
        added_at="t",
        status="active",
        exclude_reason=None,
        width=1,
        height=1,
    )
    assert Example(lon=26.86, lat=51.29, source_image="s", **base).block_key == "B512_268"
    assert Example(lon=-0.05, lat=-0.05, source_image=None, **base).block_key == "B-1_-1"
    assert Example(lon=None, lat=None, source_image="51_26", **base).block_key == "I51_26"
    assert Example(lon=None, lat=None, source_image=None, **base).block_key == "Iab"
    assert math.floor(51.29 * 10) == 512


def test_exclude_by_id_category_area(store: ExampleStore, tmp_path) -> None:
    a, _ = store.add(make_pixels(20), "not_mining", category="quarry", lon=26.15, lat=51.35)
    b, _ = store.add(make_pixels(21), "not_mining", category="quarry", lon=27.5, lat=50.5)
    c, _ = store.add(make_pixels(22), "mining", lon=26.12, lat=51.31)
    d, _ = store.add(make_pixels(23), "mining")  # not located: never in an area
    with pytest.raises(NotFoundError, match="99"):
        store.exclude(ids=[a, 99], reason="x")
    with pytest.raises(InvalidInputError, match="reason"):
        store.exclude(ids=[a], reason=" ")
    area = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[26.0, 51.2], [26.3, 51.2], [26.3, 51.4], [26.0, 51.4], [26.0, 51.2]]],
                },
            }
        ],
    }
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps(area))
    assert store.exclude(area_geojson=path, reason="bad place") == 2
    assert {e.id for e in store.examples(status="excluded")} == {a, c}
    assert store.get(a).exclude_reason == "bad place"
    assert store.exclude(category="quarry", reason="quarries") == 1  # a already excluded
    assert store.get(b).status == "excluded"
    assert store.exclude(ids=[d], reason="dup") == 1
    assert store.examples() == []
    assert store.include([a, d]) == 2
    assert {e.id for e in store.examples()} == {a, d}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ('{"type": "Point", "coordinates": [1, 2]}', "Point"),
        ('{"type": "FeatureCollection", "features": []}', "no non-empty Polygon"),
        ('{"type": "Polygon", "coordinates": "x"}', "malformed"),
        ("[1, 2]", "not a GeoJSON"),
    ],
)
def test_exclude_malformed_area_names_file(store: ExampleStore, tmp_path, content: str, match: str) -> None:
    store.add(make_pixels(30), "mining", lon=1.0, lat=2.0)
    path = tmp_path / "bad.geojson"
    path.write_text(content)
    with pytest.raises(AOIError, match=match) as info:
        store.exclude(area_geojson=path, reason="x")
    assert "bad.geojson" in str(info.value)


def test_stats_counts(store: ExampleStore) -> None:
    store.add(make_pixels(40), "mining", lon=26.12, lat=51.31, imagery_date="2015-03-09")
    store.add(make_pixels(41), "mining", lon=26.14, lat=51.33, imagery_date="2015-10-05")
    store.add(make_pixels(42), "not_mining", category="forest", imagery_date="2016-04-09")
    x, _ = store.add(make_pixels(43), "not_mining", category="snow")
    store.exclude(ids=[x], reason="dup")
    s = store.stats()
    assert (s["total"], s["active"], s["excluded"], s["located"]) == (4, 3, 1, 2)
    assert s["by_label"] == {"mining": 2, "not_mining": 1}
    assert s["by_category"] == {"forest": {"mining": 0, "not_mining": 1}, "none": {"mining": 2, "not_mining": 0}}
    assert s["by_year"]["2015"] == {"mining": 2, "not_mining": 0}
    assert next(iter(s["by_block"])) == "B513_261"
    assert s["by_block"]["B513_261"]["total"] == 2
    assert s["blocks"] == 2 and s["blocks_with_mining"] == 1
    json.dumps(s)


def test_fingerprint_depends_on_content_and_labels_only(store: ExampleStore) -> None:
    ids = [store.add(make_pixels(50 + i), "mining")[0] for i in range(3)]
    exs = store.examples()
    fp = store.fingerprint(exs)
    assert fp == store.fingerprint(list(reversed(exs)))
    assert fp != store.fingerprint(exs[:2])
    assert len(fp) == 64 and ids


def test_migrations_idempotent_and_newer_db_refused(tmp_path) -> None:
    path = tmp_path / "p.db"
    ExampleStore.open(path).close()
    ExampleStore.open(path).close()
    conn = connect(path)
    ensure_schema(conn)
    assert schema_version(conn, "labels") == len(MIGRATIONS)
    conn.execute("INSERT INTO schema_migrations VALUES ('labels', 99, 'x')")
    from amberwatch.errors import DatabaseError

    with pytest.raises(DatabaseError, match="labels"):
        ensure_schema(conn)
    conn.close()


def test_store_shares_db_with_other_components(tmp_path) -> None:
    from amberwatch.results.store import ensure_schema as results_schema

    path = tmp_path / "p.db"
    conn = connect(path)
    results_schema(conn)
    store = ExampleStore(conn)
    ensure_schema(conn)
    store.add(make_pixels(60), "mining")
    assert isinstance(conn, sqlite3.Connection) and len(store.examples()) == 1
