"""The typed records ``results.store`` returns for the scans and detections tables (rio-tiler's models.py way).

Frozen values, built only by the store from its rows: no ``sqlite3.Row`` leaves the store. A scan's
``params_json`` is parsed here and nowhere else (``ScanParams.from_json``) and written back by ``to_json``;
JSON for the web and the CLI is built at the edge from these records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from amberwatch.imagery.types import LngLatBbox

# Keys written for every scan (None when unknown), in the order scans have always stored them.
CORE_KEYS = (
    "tile_px",
    "margin_px",
    "cell_px",
    "cells_per_tile",
    "block_tiles",
    "model_resolution_m_per_px",
    "tile_resolution_m_per_px",
    "model_path",
    "cache_path",
    "min_area_ha",
    "unit_zoom_delta",
    "int8",
    "int8_check",
)
_NUMBER = (int, float)


@dataclass(frozen=True)
class ScanParams:
    """A scan's ``params_json``: how its tiles were framed and classified, where its cache is, its credit and the
    typed-warning counts of its runs. None: not recorded (older scans, or a value of the wrong type)."""

    tile_px: int | None = None
    margin_px: int | None = None
    cell_px: int | None = None
    cells_per_tile: int | None = None
    block_tiles: int | None = None
    model_resolution_m_per_px: float | None = None
    tile_resolution_m_per_px: float | None = None
    model_path: str | None = None
    cache_path: str | None = None
    min_area_ha: float | None = None
    unit_zoom_delta: int | None = None
    int8: bool = False  # the backbone ran int8 (part of the scan's identity)
    int8_check: Mapping[str, Any] | None = None  # model.int8_check.Int8Check.to_dict()
    imagery_credit: str | None = None  # as given at scan time (results.public cleans it for display)
    rescan_of: int | None = None  # the parent scan of a rescan layer
    # scan --triage-zoom: {"key": part of the scan's identity, "role": "triage" (the coarse pass) or "after" (the
    # fine pass over the tiles it kept), and for "after" the triage scan, zoom, threshold, ring and tiles skipped}
    triage: Mapping[str, Any] | None = None
    warnings: Mapping[str, int] = field(default_factory=dict)  # typed warning class -> tile reads, over all runs
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as they were

    @classmethod
    def from_json(cls, text: str | None) -> ScanParams:
        """Parse a stored params_json; malformed text, a non-object or values of the wrong type read as unknown."""
        try:
            raw = json.loads(text or "{}")
        except (TypeError, ValueError):
            raw = {}
        if not isinstance(raw, dict):
            raw = {}
        known = {f.name: _KINDS[f.name] for f in fields(cls) if f.name in _KINDS}
        values = {k: _typed(raw[k], kind) for k, kind in known.items() if k in raw}
        if values.get("int8") is None:
            values.pop("int8", None)
        else:
            values["int8"] = bool(values["int8"])  # true, or 1 as SQL's json_extract reads it
        warnings = raw.get("warnings")
        if isinstance(warnings, dict):
            values["warnings"] = {str(k): int(v) for k, v in warnings.items() if _typed(v, int) is not None}
        extra = {k: v for k, v in raw.items() if k not in known and k != "warnings"}
        return cls(**values, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The params as the JSON object stored (the core keys always; credit, parent and warnings when set)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in CORE_KEYS}
        out["int8_check"] = dict(self.int8_check) if self.int8_check is not None else None
        if self.imagery_credit is not None:
            out["imagery_credit"] = self.imagery_credit
        if self.rescan_of is not None:
            out["rescan_of"] = self.rescan_of
        if self.triage is not None:
            out["triage"] = dict(self.triage)
        if self.warnings:
            out["warnings"] = dict(self.warnings)
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}

    def to_json(self) -> str:
        """The params_json text to store (``from_json(p.to_json()) == p``)."""
        return json.dumps(self.to_dict())


_KINDS: dict[str, type | tuple[type, ...]] = {
    "tile_px": int,
    "margin_px": int,
    "cell_px": int,
    "cells_per_tile": int,
    "block_tiles": int,
    "model_resolution_m_per_px": _NUMBER,
    "tile_resolution_m_per_px": _NUMBER,
    "model_path": str,
    "cache_path": str,
    "min_area_ha": _NUMBER,
    "unit_zoom_delta": int,
    "int8": (bool, int),
    "int8_check": dict,
    "imagery_credit": str,
    "rescan_of": int,
    "triage": dict,
}


def _typed(value: Any, kind: type | tuple[type, ...]) -> Any:
    """The value if it is of the kind (a bool is not a number unless the kind says so), else None."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return None
    return value if isinstance(value, kinds) else None


@dataclass(frozen=True)
class Scan:
    """One scans row: a scan run or a rescan layer (``parent_scan_id`` set)."""

    id: int
    name: str | None
    aoi_geojson: str
    imagery: str  # URL template, preset name or local path as given: never shown in public
    imagery_source_id: str  # the tile-cache key of its imagery
    imagery_date: str | None  # date or release of the imagery (None: undated)
    zoom: int
    model_version: str
    model_threshold: float
    parent_scan_id: int | None
    status: str  # running | finished | failed
    params: ScanParams
    started_at: str
    finished_at: str | None
    tiles_total: int | None
    tiles_done: int
    tiles_empty: int
    tiles_failed: int
    area_scanned_km2: float


@dataclass(frozen=True)
class ScanLayer:
    """A scan as a map layer: the scan with its detections' count, hectares and extent (None without any)."""

    scan: Scan
    detections: int
    hectares: float
    detections_bbox: LngLatBbox | None


@dataclass(frozen=True)
class Detection:
    """One detection with its scan's imagery id and zoom (what ``query_detections`` gives)."""

    id: int
    scan_id: int
    geometry_geojson: str  # Polygon/MultiPolygon in lon/lat (RFC 7946), as stored
    centroid_lon: float
    centroid_lat: float
    bbox: LngLatBbox
    area_ha: float
    mean_prob: float
    max_prob: float
    capture_date: str | None
    model_version: str
    created_at: str
    has_thumbnail: bool
    thumbnail: bytes | None  # the JPEG chip, when asked for
    imagery_source_id: str
    zoom: int
