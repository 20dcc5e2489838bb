"""Compare two result layers (scans) of the same area: sites added, removed, grown or shrunk.

Detections of the two layers are matched by polygon intersection; overlapping detections form one
site (a connected group, so one detection split into two, or two merged into one, is one site).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field

from shapely import STRtree
from shapely.geometry import mapping, shape
from shapely.ops import unary_union

from amberwatch.results.store import get_scan, query_detections

CHANGE_KINDS = ("added", "removed", "grown", "shrunk", "unchanged")
DEFAULT_REL_TOLERANCE = 0.10  # area change below 10% (or below the absolute tolerance) counts as unchanged
DEFAULT_ABS_TOLERANCE_HA = 0.01


@dataclass(frozen=True)
class SiteChange:
    """One site of the comparison: the detections of A and of B that overlap each other."""

    kind: str  # added | removed | grown | shrunk | unchanged
    detection_ids_a: tuple[int, ...]
    detection_ids_b: tuple[int, ...]
    area_before_ha: float
    area_after_ha: float
    geometry: dict  # GeoJSON of the site: union of B's polygons, or of A's for a removed site
    centroid_lon: float
    centroid_lat: float

    @property
    def area_change_ha(self) -> float:
        """Hectares after minus before."""
        return self.area_after_ha - self.area_before_ha


@dataclass
class LayerDiff:
    """The comparison of result layer A (before) with result layer B (after)."""

    scan_a: int
    scan_b: int
    model_a: str
    model_b: str
    sites: list[SiteChange] = field(default_factory=list)

    @property
    def area_before_ha(self) -> float:
        """Total detected hectares in A."""
        return sum(s.area_before_ha for s in self.sites)

    @property
    def area_after_ha(self) -> float:
        """Total detected hectares in B."""
        return sum(s.area_after_ha for s in self.sites)

    def counts(self) -> dict[str, int]:
        """Number of sites of each kind."""
        return {k: sum(1 for s in self.sites if s.kind == k) for k in CHANGE_KINDS}

    def summary(self) -> dict:
        """Counts and hectares before/after by kind, as a plain dict."""
        by_kind = {
            k: {
                "sites": sum(1 for s in self.sites if s.kind == k),
                "area_before_ha": round(sum(s.area_before_ha for s in self.sites if s.kind == k), 4),
                "area_after_ha": round(sum(s.area_after_ha for s in self.sites if s.kind == k), 4),
            }
            for k in CHANGE_KINDS
        }
        return {
            "scan_a": self.scan_a,
            "scan_b": self.scan_b,
            "model_a": self.model_a,
            "model_b": self.model_b,
            "area_before_ha": round(self.area_before_ha, 4),
            "area_after_ha": round(self.area_after_ha, 4),
            "by_kind": by_kind,
        }

    def to_geojson(self) -> dict:
        """A FeatureCollection with one feature per site (change kind, areas, detection ids)."""
        features = [
            {
                "type": "Feature",
                "geometry": s.geometry,
                "properties": {
                    "change": s.kind,
                    "area_before_ha": round(s.area_before_ha, 4),
                    "area_after_ha": round(s.area_after_ha, 4),
                    "area_change_ha": round(s.area_change_ha, 4),
                    "detections_a": list(s.detection_ids_a),
                    "detections_b": list(s.detection_ids_b),
                    "scan_a": self.scan_a,
                    "scan_b": self.scan_b,
                },
            }
            for s in self.sites
        ]
        return {"type": "FeatureCollection", "features": features, "properties": self.summary()}

    def table(self) -> str:
        """A plain-text table: one line per changed site, then totals by kind."""
        lines = [
            f"Scan {self.scan_a} (model {self.model_a}) -> scan {self.scan_b} (model {self.model_b})",
            f"{'change':<10} {'lon':>10} {'lat':>9} {'ha before':>10} {'ha after':>9}  detections A -> B",
        ]
        for s in self.sites:
            if s.kind == "unchanged":
                continue
            ids_a = ",".join(map(str, s.detection_ids_a)) or "-"
            ids_b = ",".join(map(str, s.detection_ids_b)) or "-"
            lines.append(
                f"{s.kind:<10} {s.centroid_lon:>10.5f} {s.centroid_lat:>9.5f} {s.area_before_ha:>10.3f} "
                f"{s.area_after_ha:>9.3f}  {ids_a} -> {ids_b}"
            )
        lines.append("")
        lines.append(f"{'kind':<10} {'sites':>5} {'ha before':>10} {'ha after':>9}")
        summary = self.summary()
        for kind, row in summary["by_kind"].items():
            lines.append(f"{kind:<10} {row['sites']:>5} {row['area_before_ha']:>10.3f} {row['area_after_ha']:>9.3f}")
        lines.append(
            f"{'total':<10} {len(self.sites):>5} {summary['area_before_ha']:>10.3f} {summary['area_after_ha']:>9.3f}"
        )
        return "\n".join(lines)


def _scan_model(conn: sqlite3.Connection, scan_id: int) -> str:
    return str(get_scan(conn, scan_id).model_version)


def _detections(conn: sqlite3.Connection, scan_id: int) -> list[tuple[int, object, float]]:
    out = []
    for r in query_detections(conn, scan_id=scan_id):
        geom = shape(json.loads(r.geometry_geojson))
        if not geom.is_valid:
            geom = geom.buffer(0)
        out.append((r.id, geom, r.area_ha))
    return out


def classify_change(
    area_before_ha: float,
    area_after_ha: float,
    *,
    rel_tolerance: float = DEFAULT_REL_TOLERANCE,
    abs_tolerance_ha: float = DEFAULT_ABS_TOLERANCE_HA,
) -> str:
    """Kind of change of one site from its hectares before and after."""
    if area_before_ha <= 0:
        return "added"
    if area_after_ha <= 0:
        return "removed"
    delta = area_after_ha - area_before_ha
    if abs(delta) <= max(abs_tolerance_ha, rel_tolerance * area_before_ha):
        return "unchanged"
    return "grown" if delta > 0 else "shrunk"


def diff_layers(
    conn: sqlite3.Connection,
    scan_a: int,
    scan_b: int,
    *,
    rel_tolerance: float = DEFAULT_REL_TOLERANCE,
    abs_tolerance_ha: float = DEFAULT_ABS_TOLERANCE_HA,
) -> LayerDiff:
    """Match the detections of scans A and B by intersection and classify each site's change."""
    model_a, model_b = _scan_model(conn, scan_a), _scan_model(conn, scan_b)
    det_a, det_b = _detections(conn, scan_a), _detections(conn, scan_b)
    n_a = len(det_a)
    parent = list(range(n_a + len(det_b)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if det_a and det_b:
        tree = STRtree([g for _, g, _ in det_a])
        for j, (_, geom_b, _) in enumerate(det_b):
            for i in tree.query(geom_b, predicate="intersects"):
                # Touching edges alone do not make two detections one site.
                if det_a[int(i)][1].intersection(geom_b).area > 0:
                    parent[find(n_a + j)] = find(int(i))

    components: dict[int, list[int]] = {}
    for k in range(len(parent)):
        components.setdefault(find(k), []).append(k)

    sites: list[SiteChange] = []
    for members in components.values():
        a_idx = [k for k in members if k < n_a]
        b_idx = [k - n_a for k in members if k >= n_a]
        before = sum(det_a[i][2] for i in a_idx)
        after = sum(det_b[j][2] for j in b_idx)
        geoms = [det_b[j][1] for j in b_idx] or [det_a[i][1] for i in a_idx]
        union = unary_union(geoms)
        c = union.centroid
        sites.append(
            SiteChange(
                kind=classify_change(before, after, rel_tolerance=rel_tolerance, abs_tolerance_ha=abs_tolerance_ha),
                detection_ids_a=tuple(det_a[i][0] for i in a_idx),
                detection_ids_b=tuple(det_b[j][0] for j in b_idx),
                area_before_ha=before,
                area_after_ha=after,
                geometry=mapping(union),
                centroid_lon=float(c.x),
                centroid_lat=float(c.y),
            )
        )
    order = {k: i for i, k in enumerate(("added", "removed", "grown", "shrunk", "unchanged"))}
    sites.sort(key=lambda s: (order[s.kind], -abs(s.area_change_ha), s.centroid_lon, s.centroid_lat))
    return LayerDiff(scan_a, scan_b, model_a, model_b, sites)
