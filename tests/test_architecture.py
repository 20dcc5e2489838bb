"""The structure ARCHITECTURE.md describes, held against the code: layers, table owners, function length."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "amberwatch"

# Bottom to top: a subpackage may import its own layer's modules only within itself, and any lower layer.
LAYERS: list[set[str]] = [
    {"errors"},
    {"options", "db"},
    {"project"},
    {"imagery"},
    {"labels", "results"},
    {"model"},
    {"scan", "review"},
    {"web", "story", "loop", "publish"},  # front ends: peers, none imports another
    {"cli"},
]

# Table -> the one module that runs SQL on it (review.schema and area migrations only create tables).
TABLE_OWNERS = {
    "scans": "results/store.py",
    "scan_tiles": "results/store.py",
    "detections": "results/store.py",
    "area_samples": "results/area_store.py",
    "area_sample_strata": "results/area_store.py",
    "area_sample_units": "results/area_store.py",
    "examples": "labels/store.py",
    "example_images": "labels/store.py",
    "model_versions": "model/registry.py",
    "model_promotions": "model/registry.py",
    "chip_features": "model/features.py",
    "web_feedback": "review/feedback.py",
    "web_reports": "review/feedback.py",
    "web_label_actions": "web/labelling.py",
    "web_label_queue": "web/labelling.py",
    "web_users": "web/users.py",
    "web_settings": "web/schema.py",
    "schema_migrations": "db.py",
    "overview_tiles": "imagery/cache.py",
    "source_documents": "imagery/cache.py",
    "sources": "imagery/cache.py",  # the tile cache file; its "tiles" table shares the MBTiles name, so not listed
}
SCHEMA_MODULES = {"review/schema.py"}  # migration component "web": creates web_feedback and the web app's tables
MAX_FUNCTION_LINES = 60


def _layer(subpackage: str) -> int:
    for i, names in enumerate(LAYERS):
        if subpackage in names:
            return i
    raise AssertionError(f"subpackage {subpackage!r} is in no layer of LAYERS: add it (and to ARCHITECTURE.md)")


def _modules() -> list[tuple[str, Path]]:
    return [(p.relative_to(PACKAGE).as_posix(), p) for p in sorted(PACKAGE.rglob("*.py"))]


def _subpackage(rel: str) -> str:
    return rel.split("/")[0].removesuffix(".py")


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return [m for m in out if m == "amberwatch" or m.startswith("amberwatch.")]


def test_no_upward_or_sideways_imports_between_subpackages():
    """Every import between subpackages goes down the layers (web, story and loop do not import each other)."""
    bad = []
    for rel, path in _modules():
        me = _subpackage(rel)
        if me == "__init__":
            continue
        for module in _imports(path):
            parts = module.split(".")
            if len(parts) < 2 or parts[1] == me:
                continue
            if _layer(parts[1]) >= _layer(me):
                bad.append(f"{rel} imports {module}")
    assert not bad, "imports that run up or across the layers:\n" + "\n".join(bad)


def test_each_table_is_queried_only_by_its_owner():
    """No module outside a table's owner runs SQL on it."""
    bad = []
    for rel, path in _modules():
        text = path.read_text(encoding="utf-8")
        for table, owner in TABLE_OWNERS.items():
            pattern = rf"\b(?:FROM|INTO|UPDATE|JOIN|DELETE FROM|TABLE(?: IF NOT EXISTS)?)\s+{table}\b"
            if rel != owner and rel not in SCHEMA_MODULES and re.search(pattern, text):
                bad.append(f"{rel} runs SQL on {table} (owner: {owner})")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(("rel", "path"), _modules(), ids=[rel for rel, _ in _modules()])
def test_functions_are_short(rel, path):
    """Every function is under MAX_FUNCTION_LINES lines (def line to last line of its body)."""
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 >= MAX_FUNCTION_LINES
    ]
    assert not long, f"{rel}: " + ", ".join(long)


# The tile cache's rows are read by imagery/overview.py, whose rework (issue 27 item 5) replaces these two.
ROW_RETURNS_ALLOWED: set[tuple[str, str]] = set()


def _public_defs(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Module-level functions and methods of module-level classes whose names are public."""
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and not n.name.startswith("_")):
        defs += [n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return [d for d in defs if not d.name.startswith("_")]


def test_table_owners_return_typed_records_not_sqlite_rows():
    """No sqlite3.Row crosses a package border: a table owner's public functions are annotated to return
    records (or plain values), never ``sqlite3.Row`` nor containers of it; no public signature takes a Row."""
    owners = set(TABLE_OWNERS.values())
    bad = []
    for rel, path in _modules():
        for fn in _public_defs(ast.parse(path.read_text(encoding="utf-8"))):
            if (rel, fn.name) in ROW_RETURNS_ALLOWED:
                continue
            args = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
            notes = [a.annotation for a in args if a.annotation is not None] + [fn.returns]
            if any(n is not None and re.search(r"\bRow\b", ast.unparse(n)) for n in notes):
                bad.append(f"{rel}: {fn.name} has sqlite3.Row in its signature")
            elif rel in owners and fn.returns is None:
                bad.append(f"{rel}: {fn.name} has no return annotation")
    assert not bad, "\n".join(bad)


# The files beside the project DB, by the suffix only project.py may put on its stem.
SIBLING_SUFFIXES = ("-tiles.sqlite", "-tiles.mbtiles", "-features.sqlite", "-models", "-scan-")
# Migrations run through a Project (or migrate_component on a bare connection); the tile cache migrates its own file.
MIGRATE_CALLERS = {"project.py", "imagery/cache.py"}
# Area-sample functions over a bare connection still make their tables themselves (the web app's label routes and
# tests rely on it); their commands migrate through a Project first. To go: the web app migrating the area component.
ENSURE_CALLERS_ALLOWED = {"results/sampling.py", "results/area_review.py"}


def _called(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(names called as plain functions, names called as attributes) in the tree."""
    calls = [n.func for n in ast.walk(tree) if isinstance(n, ast.Call)]
    return {f.id for f in calls if isinstance(f, ast.Name)}, {f.attr for f in calls if isinstance(f, ast.Attribute)}


def test_migrations_and_sibling_paths_belong_to_the_project_module():
    """Only project.py derives the paths beside the project DB and runs db.migrate (the tile cache on its own file);
    no module calls an owner's ensure_schema: commands open a Project, which migrates each component once."""
    bad = []
    for rel, path in _modules():
        text = path.read_text(encoding="utf-8")
        functions, methods = _called(ast.parse(text))
        if rel != "project.py":
            bad += [
                f"{rel} derives a sibling path ({s!r})" for s in SIBLING_SUFFIXES if re.search(rf"[\"'}}]{s}", text)
            ]
        if rel not in MIGRATE_CALLERS and "migrate" in functions:
            bad.append(f"{rel} calls db.migrate")
        if rel not in ENSURE_CALLERS_ALLOWED:
            bad += [f"{rel} calls {n}" for n in ("ensure_schema", "ensure_area_schema") if n in functions | methods]
    assert not bad, "\n".join(bad)
