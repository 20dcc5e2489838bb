"""Property-based fuzzing of the CLI's id and AOI arguments (issue 26): odd input gives exit 1 or 2 and a one-line
error, never a traceback. Like tests/web/test_fuzz.py for the routes; a small ``max_examples`` keeps it fast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amberwatch import db as project_db
from amberwatch.cli import main
from amberwatch.labels.store import ensure_schema as labels_schema
from amberwatch.model.registry import ensure_schema as registry_schema
from amberwatch.results.store import ensure_schema as results_schema

HUGE_ID = 2**64
ODD_INTS = st.one_of(
    st.integers(min_value=2**63 - 2, max_value=2**80),
    st.integers(min_value=-(2**80), max_value=-1),
    st.integers(min_value=0, max_value=12),
)
# "{}" is where the id goes; every command that reaches SQLite with an id or a model version.
ID_COMMANDS = [
    "story build --scan {}",
    "publish --scan {} --out /nonexistent-amberwatch-fuzz/site",
    "examples exclude --id {}",
    "rescan {} --model 1",
    "rescan 1 --model {}",
    "scan diff {} {}",
    "scan report --scan {}",
    "similar --scan {} --detection {}",
    "similar --scan 1 --detection {} --unlike {}",
    "area sample --scan {} --n 10",
    "area export --sample {}",
    "area import-reference --sample {} ref.csv",
    "area estimate --scan {}",
    "area estimate --sample {}",
    "area list --scan {}",
    "detections export --scan {}",
    "models show {}",
    "models promote {}",
]


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clifuzz") / "project.db"
    conn = project_db.connect(path)
    for ensure in (results_schema, labels_schema, registry_schema):
        ensure(conn)
    conn.close()
    return path


def assert_clean_failure(result: Result, args: list[str]) -> None:
    """Exit 1 or 2 through SystemExit, one 'Error:' line, no traceback."""
    output = result.output
    assert isinstance(result.exception, SystemExit), f"{args}: {result.exception!r}\n{output}"
    assert result.exit_code in (1, 2), (args, result.exit_code, output)
    assert "Traceback" not in output, (args, output)
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, (args, output)


def run_cli(template: str, value: object, db_path: Path) -> tuple[Result, list[str]]:
    args = [*template.replace("{}", str(value)).split(), "--db", str(db_path)]
    return CliRunner().invoke(main, args), args


@pytest.mark.parametrize("template", ID_COMMANDS)
def test_id_above_sqlite_range_is_a_one_line_error(template, db_path):
    result, args = run_cli(template, HUGE_ID, db_path)
    assert_clean_failure(result, args)
    assert "Overflow" not in result.output


@pytest.mark.parametrize("template", ID_COMMANDS)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=ODD_INTS)
def test_any_int_as_an_id_fails_cleanly(template, db_path, value):
    result, args = run_cli(template, value, db_path)
    if result.exit_code == 0 and result.exception is None:
        return  # a listing filtered by an id nothing has: empty, not an error
    assert_clean_failure(result, args)


NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(min_value=-200, max_value=200),
)
ODD = st.one_of(st.none(), st.booleans(), st.text(max_size=5), NUMBERS)
POSITIONS = st.lists(st.one_of(NUMBERS, ODD), min_size=0, max_size=3)
RINGS = st.lists(POSITIONS, max_size=6)
COORDINATES = st.one_of(ODD, st.lists(RINGS, max_size=3), st.lists(st.lists(RINGS, max_size=2), max_size=2))
GEOMETRIES = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["Polygon", "MultiPolygon", "Point", "LineString", "Nope", "Feature", 3]),
        "coordinates": COORDINATES,
    }
)
GEOJSON = st.recursive(
    GEOMETRIES,
    lambda inner: st.one_of(
        st.fixed_dictionaries({"type": st.just("Feature"), "geometry": st.one_of(inner, ODD)}),
        st.fixed_dictionaries({"type": st.just("FeatureCollection"), "features": st.one_of(st.lists(inner), ODD)}),
        st.fixed_dictionaries({"type": st.just("GeometryCollection"), "geometries": st.lists(inner, max_size=3)}),
    ),
    max_leaves=5,
)
ODD_TEXTS = st.sampled_from(
    ["", "{", "[]", "null", '{"type": "Polygon"}', "[" * 100_000, '{"type": "Feature", "geometry": ' * 5_000]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(aoi=st.one_of(GEOJSON.map(lambda obj: json.dumps(obj, allow_nan=True)), ODD_TEXTS))
def test_malformed_geojson_aoi_fails_cleanly_or_plans(tmp_path, aoi):
    path = tmp_path / "aoi.geojson"
    path.write_text(aoi)
    args = ["scan", "--aoi", str(path), "--dry-run", "--zoom", "6"]
    result = CliRunner().invoke(main, args)
    if result.exit_code == 0 and result.exception is None:
        return  # an odd but usable AOI: planned
    assert_clean_failure(result, args)
