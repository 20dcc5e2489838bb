"""The ``amberwatch examples`` commands through Click: output, error messages and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from amberwatch.cli import main
from amberwatch.imagery.decode import encode_png
from amberwatch.labels.store import ExampleStore

from .conftest import make_pixels


def run(*args: str) -> Result:
    """Invoke the CLI in-process; returns Click's Result."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "project.db")


@pytest.fixture
def imported(db: str, small_folder: Path) -> str:
    result = run("examples", "import", str(small_folder), "--db", db, "--source", "texty", "--added-by", "ann")
    assert result.exit_code == 0, result.output
    return db


def test_import_prints_summary_and_is_idempotent(db: str, small_folder: Path) -> None:
    (small_folder / "negative" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nrest is missing")
    result = run("examples", "import", str(small_folder), "--db", db)
    assert result.exit_code == 0
    assert "added 12, already present 0, skipped 1" in result.stdout
    assert "broken.png" in result.stdout and "broken.png" in result.stderr  # summary line + warning
    again = run("examples", "import", str(small_folder), "--db", db)
    assert "added 0, already present 12, skipped 1" in again.stdout


def test_import_env_db(tmp_path: Path, small_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMBERWATCH_DB", str(tmp_path / "env.db"))
    assert run("examples", "import", str(small_folder)).exit_code == 0
    assert (tmp_path / "env.db").is_file()


def test_import_errors(db: str, tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    result = run("examples", "import", str(tmp_path / "photos"), "--db", db)
    assert result.exit_code == 1
    assert "photos" in result.stderr and "positive/" in result.stderr
    result = run("examples", "import", str(tmp_path / "missing"), "--db", db)
    assert result.exit_code == 1 and "missing" in result.stderr
    assert run("examples", "import", "--db", db).exit_code == 2  # no folder argument


def test_stats_text_and_json(imported: str) -> None:
    text = run("examples", "stats", "--db", imported)
    assert text.exit_code == 0
    assert "examples: 12 (active 12, excluded 0)" in text.stdout
    assert "mining 6, not_mining 6" in text.stdout
    data = json.loads(run("examples", "stats", "--db", imported, "--json").stdout)
    assert data["by_label"] == {"mining": 6, "not_mining": 6}
    assert data["by_category"]["quarry"] == {"mining": 0, "not_mining": 1}
    assert sum(v["total"] for v in data["by_block"].values()) == 12


def test_stats_on_missing_db_is_an_error(tmp_path: Path) -> None:
    result = run("examples", "stats", "--db", str(tmp_path / "nope.db"))
    assert result.exit_code == 1 and "nope.db" in result.stderr
    assert not (tmp_path / "nope.db").exists()


def test_list_table(imported: str) -> None:
    result = run("examples", "list", "--db", imported, "--label", "not_mining", "--limit", "3")
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["id", "label", "category"]
    assert len(lines) == 5 and lines[-1] == "3 of 6 shown"
    assert all("not_mining" in line for line in lines[1:4])
    assert run("examples", "list", "--db", imported, "--label", "pits").exit_code == 2
    assert run("examples", "list", "--db", imported, "--limit", "0").exit_code == 2


def test_exclude_by_id_category_area(imported: str, tmp_path: Path) -> None:
    result = run("examples", "exclude", "--db", imported, "--id", "1", "--id", "2", "--reason", "blurry")
    assert result.exit_code == 0 and "excluded 2 examples" in result.stdout
    result = run("examples", "exclude", "--db", imported, "--category", "quarry", "--reason", "look-alike")
    assert "excluded 1 example" in result.stdout
    store = ExampleStore.open(imported)
    located = [e for e in store.examples() if e.located]
    target = located[0]
    store.close()
    d = 0.0001
    area = {
        "type": "Polygon",
        "coordinates": [
            [
                [target.lon - d, target.lat - d],
                [target.lon + d, target.lat - d],
                [target.lon + d, target.lat + d],
                [target.lon - d, target.lat + d],
                [target.lon - d, target.lat - d],
            ]
        ],
    }
    (tmp_path / "area.geojson").write_text(json.dumps(area))
    result = run("examples", "exclude", "--db", imported, "--area", str(tmp_path / "area.geojson"), "--reason", "x")
    assert result.exit_code == 0 and "excluded" in result.stdout
    in_area = int(result.stdout.split()[1])
    assert in_area >= 1  # the target, plus any crop of the same source image still active
    listing = run("examples", "list", "--db", imported, "--status", "excluded", "--limit", "100").stdout
    assert listing.strip().splitlines()[-1] == f"{3 + in_area} of {3 + in_area} shown"
    stats = json.loads(run("examples", "stats", "--db", imported, "--json").stdout)
    assert stats["excluded"] == 3 + in_area


def test_exclude_errors(imported: str, tmp_path: Path) -> None:
    result = run("examples", "exclude", "--db", imported, "--id", "999", "--reason", "x")
    assert result.exit_code == 1 and "999" in result.stderr
    bad = tmp_path / "broken.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [')
    result = run("examples", "exclude", "--db", imported, "--area", str(bad), "--reason", "x")
    assert result.exit_code == 1 and "broken.geojson" in result.stderr
    assert run("examples", "exclude", "--db", imported, "--reason", "x").exit_code == 2
    assert (
        run("examples", "exclude", "--db", imported, "--id", "1", "--category", "snow", "--reason", "x").exit_code == 2
    )
    assert run("examples", "exclude", "--db", imported, "--id", "1").exit_code == 2  # no reason
    assert run("examples", "exclude", "--db", imported, "--category", "lake", "--reason", "x").exit_code == 2
    assert (
        run(
            "examples", "exclude", "--db", imported, "--area", str(tmp_path / "none.geojson"), "--reason", "x"
        ).exit_code
        == 2
    )


def test_export(imported: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("examples", "export", str(out), "--db", imported)
    assert result.exit_code == 0 and "exported 6 mining" in result.stdout
    assert len(list((out / "positive").glob("*.png"))) == 6
    assert len(list((out / "negative").glob("*.png"))) == 6
    assert len(list((out / "positive").glob("*_GMT_super_*.png"))) == 5


def test_cli_subprocess_exit_codes(tmp_path: Path) -> None:
    """The installed entry point: error text without traceback, exit 1."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "amberwatch.cli",
            "examples",
            "exclude",
            "--db",
            str(tmp_path / "x.db"),
            "--id",
            "1",
            "--reason",
            "r",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "x.db" in proc.stderr and "Traceback" not in proc.stderr


def test_generated_png_names(db: str, tmp_path: Path) -> None:
    (tmp_path / "positive").mkdir()
    (tmp_path / "positive" / "51.3_26.1_09_Mar_2015_GMT_super_4.png").write_bytes(encode_png(make_pixels(5)))
    assert run("examples", "import", str(tmp_path), "--db", db).exit_code == 0
    line = run("examples", "list", "--db", db).stdout.splitlines()[1]
    assert "51.3000" in line and "26.1000" in line and "2015-03-09" in line and "B513_261" in line
