"""Folder import and export: Texty names, categories, idempotence, bad files, the whole real set."""

from __future__ import annotations

import io
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from amberwatch.errors import InvalidInputError, NotFoundError, SkippedFileWarning
from amberwatch.imagery.decode import encode_png
from amberwatch.labels.importer import export_folder, import_folder, parse_texty_name, texty_name
from amberwatch.labels.store import ExampleStore

from .conftest import make_pixels


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_parse_texty_name() -> None:
    meta = parse_texty_name("51.288783900000695_26.895850000000234_05_Oct_2015_GMT_super_6.png")
    assert meta is not None
    assert (meta.lat, meta.lon, meta.imagery_date, meta.superpixel) == (
        51.288783900000695,
        26.895850000000234,
        "2015-10-05",
        6,
    )
    assert meta.source_image == "51.288783900000695_26.895850000000234"
    assert parse_texty_name("pit.png") is None
    assert parse_texty_name("51.2_26.8_31_Feb_2015_GMT_super_6.png") is None  # no such day
    assert parse_texty_name("99.2_26.8_01_Feb_2015_GMT_super_6.png") is None  # latitude out of range
    assert texty_name("51.2_26.8", "2015-03-09", 4) == "51.2_26.8_09_Mar_2015_GMT_super_4.png"


def test_import_small_real_folder(store: ExampleStore, small_folder: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no file may be skipped here
        report = import_folder(store, small_folder, source="texty", added_by="tester")
    assert (report.added, report.present, report.skipped) == (12, 0, [])
    assert report.by_label == {"mining": 6, "not_mining": 6}
    texty = [e for e in store.examples() if e.source_image]
    assert len(texty) == 10
    for ex in texty:
        meta = parse_texty_name(store.original_name(ex.id))
        assert (ex.lat, ex.lon, ex.imagery_date, ex.source_image) == (
            meta.lat,
            meta.lon,
            meta.imagery_date,
            meta.source_image,
        )
        assert ex.block_key.startswith("B") and ex.source == "texty" and ex.added_by == "tester"
    plain = {store.original_name(e.id): e for e in store.examples() if not e.source_image}
    assert set(plain) == {"plain_pit.png", "sand quarry.png"}
    assert plain["plain_pit.png"].label == "mining" and plain["plain_pit.png"].lat is None
    assert plain["sand quarry.png"].category == "quarry" and plain["sand quarry.png"].label == "not_mining"
    # The stored pixels are the file's pixels.
    some = texty[0]
    folder = small_folder / ("positive" if some.label == "mining" else "negative")
    original = np.asarray(Image.open(folder / store.original_name(some.id)).convert("RGB"))
    np.testing.assert_array_equal(store.pixels(some.id), original)


def test_reimport_is_idempotent(store: ExampleStore, small_folder: Path) -> None:
    first = import_folder(store, small_folder)
    again = import_folder(store, small_folder)
    assert (again.added, again.present, len(again.skipped)) == (0, first.added, 0)
    assert len(store.examples(status=None)) == first.added


def test_alias_folders_and_unknown_subfolder(store: ExampleStore, tmp_path: Path) -> None:
    (tmp_path / "mining").mkdir()
    (tmp_path / "not_mining" / "lake").mkdir(parents=True)
    (tmp_path / "not_mining" / "snow").mkdir()
    (tmp_path / "mining" / "a.png").write_bytes(encode_png(make_pixels(1)))
    (tmp_path / "not_mining" / "lake" / "b.png").write_bytes(encode_png(make_pixels(2)))
    (tmp_path / "not_mining" / "snow" / "c.png").write_bytes(encode_png(make_pixels(3)))
    (tmp_path / "not_mining" / ".DS_Store").write_bytes(b"junk")  # hidden files are ignored
    report = import_folder(store, tmp_path)
    assert (report.added, report.skipped) == (3, [])
    cats = sorted((e.label, e.category or "") for e in store.examples())
    assert cats == [("mining", ""), ("not_mining", ""), ("not_mining", "snow")]


def test_bad_files_are_skipped_by_name_and_batch_goes_on(store: ExampleStore, tmp_path: Path) -> None:
    pos, neg = tmp_path / "positive", tmp_path / "negative"
    pos.mkdir()
    neg.mkdir()
    good = encode_png(make_pixels(1, 40, 40))
    (pos / "good.png").write_bytes(good)
    (pos / "empty.png").write_bytes(b"")
    (pos / "truncated.png").write_bytes(good[: len(good) // 2])
    (pos / "notes.png").write_text("this is a text file, not an image")
    rgba = np.dstack([make_pixels(2), np.full((24, 32), 255, np.uint8)])
    (neg / "rgba.png").write_bytes(_png(Image.fromarray(rgba, "RGBA")))
    (neg / "gray.png").write_bytes(_png(Image.fromarray(make_pixels(3)[:, :, 0], "L")))
    sixteen = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80
    (neg / "sixteen.png").write_bytes(_png(Image.fromarray(sixteen).convert("I;16")))
    with pytest.warns(SkippedFileWarning) as record:
        report = import_folder(store, tmp_path)
    skipped = {Path(p).name: reason for p, reason in report.skipped}
    assert set(skipped) == {"empty.png", "truncated.png", "notes.png"}
    assert "empty" in skipped["empty.png"]
    assert "BytesIO" not in skipped["notes.png"] and "not a readable image" in skipped["notes.png"]
    assert {Path(str(w.message).split(": ")[0].removeprefix("skipped ")).name for w in record} == set(skipped)
    assert report.added == 4  # good, rgba, gray, 16-bit
    shapes = {store.original_name(e.id): store.pixels(e.id).shape for e in store.examples()}
    assert shapes == {
        n: (h, w, 3)
        for n, (h, w) in {
            "good.png": (40, 40),
            "rgba.png": (24, 32),
            "gray.png": (24, 32),
            "sixteen.png": (24, 32),
        }.items()
    }
    summary = "\n".join(report.summary_lines())
    assert "added 4, already present 0, skipped 3" in summary
    assert "truncated.png" in summary and "notes.png" in summary


def test_same_image_in_both_labels_is_skipped_as_conflict(store: ExampleStore, tmp_path: Path) -> None:
    for sub in ("positive", "negative"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "same.png").write_bytes(encode_png(make_pixels(9)))
    with pytest.warns(SkippedFileWarning, match="already example"):
        report = import_folder(store, tmp_path)
    assert report.added == 1 and len(report.skipped) == 1


def test_folder_without_label_folders_is_refused(store: ExampleStore, tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(InvalidInputError, match=str(tmp_path)):
        import_folder(store, tmp_path)
    with pytest.raises(NotFoundError, match="missing"):
        import_folder(store, tmp_path / "missing")


def test_export_round_trip(store: ExampleStore, small_folder: Path, tmp_path: Path) -> None:
    import_folder(store, small_folder)
    store.add(make_pixels(70), "not_mining", lon=26.5, lat=51.25, imagery_date="2016-04-09", source_image=None)
    ex_id, _ = store.add(make_pixels(71), "not_mining", category="water")
    store.exclude(ids=[ex_id], reason="dup")
    out = tmp_path / "out"
    counts = export_folder(store, out, by_category=True)
    assert counts == {"mining": 6, "not_mining": 7}
    names = sorted(p.name for p in (out / "negative").rglob("*.png"))
    assert "51.25_26.5_09_Apr_2016_GMT_super_13.png" in names
    assert (out / "negative" / "quarry" / "sand quarry.png").is_file()
    for p in (small_folder / "positive").glob("*_super_*.png"):
        assert (out / "positive" / p.name).read_bytes() == p.read_bytes()
    other = ExampleStore.open(tmp_path / "other.db")
    report = import_folder(other, out)
    assert report.added == 13 and not report.skipped
    assert other.fingerprint(other.examples()) == store.fingerprint(store.examples())
    located = [e for e in other.examples() if e.lat == 51.25]
    assert located and located[0].imagery_date == "2016-04-09"
    assert {e.category for e in other.examples()} == {None, "quarry"}
    other.close()


def test_import_whole_real_set(store: ExampleStore, texty_dir: Path) -> None:
    t0 = time.perf_counter()
    report = import_folder(store, texty_dir, source="texty")
    seconds = time.perf_counter() - t0
    assert (report.added, report.skipped) == (881, [])
    stats = store.stats()
    assert stats["by_label"] == {"mining": 200, "not_mining": 681}
    assert stats["located"] == 881
    assert 10 <= stats["blocks_with_mining"] <= 16  # README: 13 blocks hold the positives
    assert seconds < 60, f"import took {seconds:.1f} s"
    again = import_folder(store, texty_dir, source="texty")
    assert (again.added, again.present) == (0, 881)


def test_bomb_and_tiny_files_are_skipped_by_name_and_the_import_goes_on(store: ExampleStore, tmp_path: Path) -> None:
    from tests.fixtures.tileserver import bomb_png

    pos = tmp_path / "positive"
    pos.mkdir()
    (pos / "good.png").write_bytes(encode_png(make_pixels(1, 40, 40)))
    (pos / "bomb.png").write_bytes(bomb_png())  # 20000 x 20000 px in a few dozen KB
    (pos / "dot.png").write_bytes(encode_png(make_pixels(2, 1, 1)))
    (pos / "sliver.png").write_bytes(encode_png(make_pixels(3, 200, 8)))
    with pytest.warns(SkippedFileWarning) as record:
        report = import_folder(store, tmp_path)
    skipped = {Path(p).name: reason for p, reason in report.skipped}
    assert set(skipped) == {"bomb.png", "dot.png", "sliver.png"}
    assert "too large" in skipped["bomb.png"]
    assert "1x1 px is below the minimum of 16x16 px" in skipped["dot.png"]
    assert "8x200 px is below the minimum" in skipped["sliver.png"]
    assert {str(w.message).split(":")[0].removeprefix("skipped ") for w in record} == {str(pos / n) for n in skipped}
    assert report.added == 1 and [store.original_name(e.id) for e in store.examples()] == ["good.png"]
