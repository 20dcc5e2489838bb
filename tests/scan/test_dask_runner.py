"""Scans on a Dask cluster (LocalCluster, 2 worker processes) against the real local tile server.

Every test compares with one single-machine scan of the same AOI: same tile grids, same detections,
every tile recorded exactly once, also after a worker is killed mid-scan or the client is killed.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mercantile
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from amberwatch.cli import main
from amberwatch.imagery.aoi import aoi_from_geojson
from amberwatch.imagery.types import ImageryRef
from amberwatch.scan.engine import ScanSettings, run_scan
from tests.fixtures.tileserver import TileServer

REPO = Path(__file__).resolve().parents[2]
TEXTY_TILES = REPO / ".." / "shared" / "data" / "texty-amber" / "tiles"
ZOOM = 18
SIDE = 16  # AOI of SIDE x SIDE z18 tiles = 4 units of 8 x 8 (parents at z15)
AMBERWATCH = str(Path(sys.executable).with_name("amberwatch"))

pytestmark = pytest.mark.skipif(not TEXTY_TILES.is_dir(), reason=f"Texty imagery not found at {TEXTY_TILES}")


def _crops() -> list[bytes]:
    """3 x 3 crops of 256 px (PNG) from each of the four real Texty images (two with mining, two without)."""
    crops = []
    for name in ("positive1.png", "negative1.png", "positive2.png", "negative2.png"):
        arr = np.asarray(Image.open(TEXTY_TILES / name).convert("RGB"))
        for j in range(3):
            for i in range(3):
                buf = io.BytesIO()
                Image.fromarray(arr[j * 256 : (j + 1) * 256, i * 256 : (i + 1) * 256]).save(buf, "PNG")
                crops.append(buf.getvalue())
    return crops


@pytest.fixture(scope="module")
def server() -> Iterator[TileServer]:
    """The tile server with real imagery on the AOI's tiles and their neighbour ring (unit-aligned AOI)."""
    srv = TileServer().start()
    centre = mercantile.tile(26.90, 51.32, ZOOM)
    x0, y0 = centre.x // 8 * 8, centre.y // 8 * 8
    crops = _crops()
    for j in range(-1, SIDE + 1):
        for i in range(-1, SIDE + 1):
            # 3 x 3 blocks of one image each, so mining sites stay whole within a block
            image = (i // 3 + j // 3) % 4
            srv.tiles[(ZOOM, x0 + i, y0 + j)] = crops[image * 9 + (j % 3) * 3 + i % 3]
    srv.origin = (x0, y0)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def aoi_file(server: TileServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GeoJSON AOI exactly covering SIDE x SIDE tiles."""
    x0, y0 = server.origin
    west, north = mercantile.ul(x0, y0, ZOOM)
    east, south = mercantile.ul(x0 + SIDE, y0 + SIDE, ZOOM)
    path = tmp_path_factory.mktemp("aoi") / "aoi.geojson"
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    return path


@pytest.fixture(scope="module")
def reference(server: TileServer, aoi_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Tiles and detections of a single-machine scan (local process pool of 2 workers)."""
    db = tmp_path_factory.mktemp("ref") / "ref.db"
    aoi = aoi_from_geojson(json.loads(aoi_file.read_text()), name=str(aoi_file))
    out = run_scan(aoi, server.url, ZOOM, db, ScanSettings(workers=2, progress=False))
    assert out.tiles_total == SIDE * SIDE and out.tiles_failed == 0
    assert out.detections > 0, "the real positive images should give detections"
    return {**snapshot(db, out.scan_id), "db": db, "scan_id": out.scan_id}


def snapshot(db: Path, scan_id: int | None = None) -> dict:
    """Per-tile rows and detections of a scan (the latest by default), comparable across DBs."""
    conn = sqlite3.connect(db)
    try:
        if scan_id is None:
            scan_id = conn.execute("SELECT MAX(id) FROM scans").fetchone()[0]
        tiles = conn.execute(
            "SELECT z, x, y, status, attempts, max_prob, grid, embedding FROM scan_tiles WHERE scan_id = ?"
            " ORDER BY z, x, y",
            (scan_id,),
        ).fetchall()
        detections = conn.execute(
            "SELECT geometry_geojson, area_ha, mean_prob, max_prob, capture_date, model_version FROM detections"
            " WHERE scan_id = ? ORDER BY centroid_lon, centroid_lat",
            (scan_id,),
        ).fetchall()
        scans = conn.execute("SELECT COUNT(*) FROM scans").fetchone()[0]
    finally:
        conn.close()
    return {"tiles": tiles, "detections": detections, "scans": scans}


def assert_same_scan(got: dict, ref: dict) -> None:
    """Every tile exactly once, with the reference's grid, and the same detections."""
    keys = [t[:3] for t in got["tiles"]]
    assert len(keys) == len(set(keys)) == SIDE * SIDE
    assert all(t[4] == 1 for t in got["tiles"]), "a tile was recorded more than once"
    assert [t[:4] + t[5:] for t in got["tiles"]] == [t[:4] + t[5:] for t in ref["tiles"]]
    assert got["detections"] == ref["detections"]


def _rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT COUNT(*) FROM scan_tiles").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_cli_dask_local_equals_local_scan(server, aoi_file, reference, tmp_path):
    """`amberwatch scan ... --dask local --workers 2` then `detections export` gives the local scan's detections."""
    db = tmp_path / "dask.db"
    result = CliRunner().invoke(
        main,
        [
            "scan",
            "--aoi",
            str(aoi_file),
            "--imagery",
            server.url,
            "--zoom",
            str(ZOOM),
            "--db",
            str(db),
            "--dask",
            "local",
            "--workers",
            "2",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "started a local cluster of 2 worker processes" in result.output
    assert "dashboard" in result.output
    assert_same_scan(snapshot(db), reference)
    out = tmp_path / "dask.geojson"
    result = CliRunner().invoke(
        main, ["detections", "export", "--db", str(db), "--format", "geojson", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    features = json.loads(out.read_text())["features"]
    assert len(features) == len(reference["detections"])
    assert sorted(round(f["properties"]["area_ha"], 6) for f in features) == sorted(
        round(d[1], 6) for d in reference["detections"]
    )


@pytest.mark.slow
def test_worker_killed_mid_scan_loses_and_doubles_nothing(server, aoi_file, reference, tmp_path):
    """SIGKILL a worker while it runs a unit: the unit is rescheduled, the result equals the local scan."""
    from distributed import Client, LocalCluster

    db = tmp_path / "killed.db"
    aoi = aoi_from_geojson(json.loads(aoi_file.read_text()), name=str(aoi_file))
    killed: list[str] = []
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.CRITICAL
        ) as cluster,
        Client(cluster) as client,
    ):
        pids = client.run(os.getpid)

        def kill_a_busy_worker() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                if _rows(db) > 0:  # some units are recorded: the scan is well under way
                    busy = [w for w, keys in client.processing().items() if keys and w in pids]
                    if busy:
                        os.kill(pids[busy[0]], signal.SIGKILL)
                        killed.append(busy[0])
                        return
                time.sleep(0.01)

        watcher = threading.Thread(target=kill_a_busy_worker, daemon=True)
        watcher.start()
        out = run_scan(
            aoi,
            server.url,
            ZOOM,
            db,
            ScanSettings(
                dask=cluster.scheduler_address,
                worker_cache=str(tmp_path / "worker-tiles.mbtiles"),
                progress=False,
            ),
        )
        watcher.join(timeout=5)
    assert killed, "no worker was busy after the first unit: the kill did not happen mid-scan"
    assert out.tiles_failed == 0
    assert_same_scan(snapshot(db), reference)
    # The worker cache is not the client's: the client fetched the tiles around detections for thumbnails.
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM detections WHERE thumbnail IS NULL").fetchone()[0] == 0
    conn.close()


def _kill_worker_running(client, unit: int, wait_s: float, killed: list) -> None:
    """SIGKILL the worker process running the scan's ``unit``-th unit once it has run it for ``wait_s``."""
    deadline, seen = time.monotonic() + 120, None
    while time.monotonic() < deadline:
        pids = client.run(os.getpid)
        running = [w for w, keys in client.processing().items() if any(k.endswith(f"-{unit}") for k in keys)]
        if running and running[0] in pids:
            seen = seen or time.monotonic()
            if time.monotonic() - seen >= wait_s:
                os.kill(pids[running[0]], signal.SIGKILL)
                killed.append(unit)
                return
        time.sleep(0.01)


# early: as the first unit starts; mid and late: 1 s into the second or the last of the 4 units, time for Dask's
# memory manager (every 0.2 s here, 2 s by default) to drop copies of data on the idle worker that only the busy
# one needs (this lost the model broadcast to both workers: "lose scattered data, which can't be recovered").
@pytest.mark.slow
@pytest.mark.parametrize(("unit", "wait_s"), [(0, 0.0), (1, 1.0), (3, 1.0)], ids=["early", "mid", "late"])
def test_lost_worker_costs_nothing(server, aoi_file, reference, tmp_path, unit, wait_s):
    """SIGKILL a busy worker early, mid-scan or near the end: the model survives it, the scan equals the local one."""
    import dask
    from distributed import Client, LocalCluster

    from amberwatch.scan import dask_runner

    db = tmp_path / "killed.db"
    aoi = aoi_from_geojson(json.loads(aoi_file.read_text()), name=str(aoi_file))
    killed: list[int] = []
    with (
        dask.config.set({"distributed.scheduler.active-memory-manager.interval": "200ms"}),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.CRITICAL
        ) as cluster,
        Client(cluster) as client,
    ):
        watcher = threading.Thread(target=_kill_worker_running, args=(client, unit, wait_s, killed), daemon=True)
        watcher.start()
        settings = ScanSettings(
            dask=cluster.scheduler_address,
            worker_cache=str(tmp_path / "worker-tiles.mbtiles"),
            max_in_flight=1,  # one unit at a time: the other worker idles, as near the end of any scan
            progress=False,
        )
        out = run_scan(aoi, server.url, ZOOM, db, settings)
        watcher.join(timeout=5)
        client.wait_for_workers(2, timeout=30)  # the nanny restarted the killed worker
        has_model = client.run(lambda: dask_runner._loaded_model is not None)
    assert killed, f"unit {unit} did not run for {wait_s} s: the kill did not happen"
    if unit == 0:  # the restarted worker ran some of the 3 units left, with the model it fetched itself
        assert list(has_model.values()) == [True, True]
    assert out.tiles_failed == 0 and out.tiles_total == SIDE * SIDE
    assert_same_scan(snapshot(db), reference)


@pytest.mark.slow
def test_resume_after_client_killed(server, aoi_file, reference, tmp_path):
    """SIGKILL the whole `scan --dask local` process group mid-scan; the same command finishes the rest."""
    db = tmp_path / "resume.db"
    cmd = [
        AMBERWATCH,
        "scan",
        "--aoi",
        str(aoi_file),
        "--imagery",
        server.url,
        "--zoom",
        str(ZOOM),
        "--db",
        str(db),
        "--dask",
        "local",
        "--workers",
        "2",
        "--no-progress",
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and _rows(db) == 0 and proc.poll() is None:
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the client and its LocalCluster processes, like a killed job
        proc.wait()
    done_before = _rows(db)
    assert 0 < done_before < SIDE * SIDE, f"kill came too early or too late ({done_before} tiles recorded)"
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    assert "resum" in rerun.stdout + rerun.stderr
    got = snapshot(db)
    assert got["scans"] == 1
    assert_same_scan(got, reference)
    # The resumed Dask scan answers 'similar' exactly as the uninterrupted local one.
    assert _similar_json(db, 1) == _similar_json(reference["db"], reference["scan_id"])


def test_unreachable_scheduler_is_a_clear_error(aoi_file, server, tmp_path, monkeypatch):
    """`--dask tcp://...` with nothing listening: exit 1 with a message naming the address."""
    from amberwatch.scan import dask_runner

    monkeypatch.setattr(dask_runner, "CONNECT_TIMEOUT_S", 2.0)
    address = "tcp://127.0.0.1:9"  # discard port: nothing listens there
    result = CliRunner().invoke(
        main,
        [
            "scan",
            "--aoi",
            str(aoi_file),
            "--imagery",
            server.url,
            "--zoom",
            str(ZOOM),
            "--db",
            str(tmp_path / "x.db"),
            "--dask",
            address,
            "--no-progress",
        ],
    )
    assert result.exit_code == 1, result.output
    assert f"cannot connect to the Dask scheduler '{address}'" in result.output


@pytest.mark.slow
def test_in_flight_units_are_bounded(server, aoi_file, tmp_path):
    """A unit is submitted only when fewer than max_in_flight are pending, however many units the AOI has."""
    from distributed import LocalCluster

    from amberwatch.model import load
    from amberwatch.scan.dask_runner import run_units_dask
    from amberwatch.scan.engine import model_tile_px
    from amberwatch.scan.tiling import iter_units
    from amberwatch.scan.worker import ScanContext

    aoi = aoi_from_geojson(json.loads(aoi_file.read_text()), name=str(aoi_file))
    clf = load(None)
    tile_px = model_tile_px(zoom_resolution_m_per_px(aoi), clf.resolution_m_per_px, clf.cell_px)
    context = ScanContext(
        imagery=ImageryRef(server.url),
        cache_path=str(tmp_path / "client-tiles.mbtiles"),
        model_path=None,
        model_version=clf.version,
        zoom=ZOOM,
        tile_px=tile_px,
        margin_px=-(-clf.context_px // clf.cell_px) * clf.cell_px,
        cell_px=clf.cell_px,
        torch_threads=None,  # the worker runs in this process: leave its torch alone
    )
    pulled = 0

    def units():
        nonlocal pulled
        for unit in iter_units(aoi.geometry, ZOOM, unit_zoom_delta=2):  # 4 x 4-tile units: 16 of them
            pulled += 1
            yield unit, unit.tiles

    limit = 3
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None, silence_logs=logging.CRITICAL
    ) as cluster:
        results = run_units_dask(
            units(),
            context,
            clf,
            address=cluster.scheduler_address,
            max_in_flight=limit,
            worker_cache=str(tmp_path / "worker-tiles.mbtiles"),
        )
        for k, result in enumerate(results, start=1):
            assert pulled <= (k - 1) + limit, f"{pulled} units submitted before result {k}"
            assert all(t.status == "done" for t in result.tiles)
            if k == 6:
                break  # like an interrupted scan: the runner cancels what is pending and closes its client
        results.close()
    assert k == 6 and pulled <= 5 + limit < SIDE * SIDE // 16


def zoom_resolution_m_per_px(aoi) -> float:
    """Ground resolution (m/px) of ZOOM tiles at the AOI's centre latitude."""
    from amberwatch.imagery.types import ground_resolution_m_per_px

    return ground_resolution_m_per_px(aoi.geometry.centroid.y, ZOOM)


def _similar_json(db: Path, scan_id: int) -> list:
    """`amberwatch similar --at` the centre of the AOI's first tile, as JSON."""
    conn = sqlite3.connect(db)
    x, y = conn.execute("SELECT MIN(x), MIN(y) FROM scan_tiles WHERE scan_id = ?", (scan_id,)).fetchone()
    conn.close()
    w, s, e, n = mercantile.bounds(x + 1, y + 1, ZOOM)
    result = CliRunner().invoke(
        main, ["similar", "--db", str(db), "--scan", str(scan_id), "--at", f"{(s + n) / 2},{(w + e) / 2}", "--json"]
    )
    assert result.exit_code == 0, result.output
    return [{k: v for k, v in p.items() if k != "detection_id"} for p in json.loads(result.output)]


def _block_image(server: TileServer, tile: str) -> str:
    """Which Texty image a served tile was cut from (the fixture lays them out in 3 x 3 blocks)."""
    _, x, y = (int(v) for v in tile.split("/"))
    x0, y0 = server.origin
    return ("positive1", "negative1", "positive2", "negative2")[((x - x0) // 3 + (y - y0) // 3) % 4]


@pytest.mark.slow
def test_every_scanned_tile_keeps_an_embedding(reference):
    """Local and Dask scans (assert_same_scan compares them) keep one float16 embedding of 64 values per done tile."""
    sizes = {len(t[7]) for t in reference["tiles"] if t[3] == "done"}
    assert sizes == {128}


@pytest.mark.slow
def test_similar_to_a_pit_finds_pits_first(server, reference, tmp_path):
    """`amberwatch similar --detection` on the likeliest pit field: the top places are on the images with mining."""
    conn = sqlite3.connect(reference["db"])
    best = conn.execute(
        "SELECT id FROM detections WHERE scan_id = ? ORDER BY mean_prob DESC LIMIT 1", (reference["scan_id"],)
    ).fetchone()[0]
    conn.close()
    geojson = tmp_path / "similar.geojson"
    result = CliRunner().invoke(
        main,
        [
            "similar",
            "--db",
            str(reference["db"]),
            "--scan",
            str(reference["scan_id"]),
            "--detection",
            str(best),
            "--top",
            "5",
            "--json",
            "--geojson",
            str(geojson),
        ],
    )
    assert result.exit_code == 0, result.output
    places = json.loads(result.output)
    assert [p["rank"] for p in places] == [1, 2, 3, 4, 5]
    assert all({"lat", "lon", "score", "tile", "detection_id"} <= set(p) for p in places)
    assert [p["score"] for p in places] == sorted((p["score"] for p in places), reverse=True)
    assert all(_block_image(server, p["tile"]).startswith("positive") for p in places), places
    assert json.loads(geojson.read_text())["features"][0]["properties"]["tile"] == places[0]["tile"]


@pytest.mark.slow
def test_similar_unlike_and_bad_queries(server, reference):
    """--unlike pushes away; no query, an unknown detection and a point off the scan are one-line errors."""
    db, scan = str(reference["db"]), str(reference["scan_id"])
    conn = sqlite3.connect(reference["db"])
    ids = [r[0] for r in conn.execute("SELECT id FROM detections WHERE scan_id = ? ORDER BY mean_prob DESC", (scan,))]
    conn.close()
    base = ["similar", "--db", db, "--scan", scan, "--json"]
    like = CliRunner().invoke(main, [*base, "--detection", str(ids[0]), "--top", "3"])
    unlike = CliRunner().invoke(main, [*base, "--detection", str(ids[0]), "--unlike", str(ids[-1]), "--top", "3"])
    assert like.exit_code == 0 and unlike.exit_code == 0, like.output + unlike.output
    assert json.loads(unlike.output) != json.loads(like.output)
    for args, message in [
        ([], "give at least one query"),
        (["--detection", "999999"], "detection 999999 does not exist"),
        (["--at", "10,10"], "is not on an embedded tile of scan"),
        (["--at", "north"], "must be 'LAT,LON'"),
    ]:
        result = CliRunner().invoke(main, [*base, *args])
        assert result.exit_code == 1, result.output
        assert message in result.output and "Traceback" not in result.output
