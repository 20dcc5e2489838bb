"""Areas of interest: read a GeoJSON file or a bbox into one valid lon/lat (Multi)Polygon, or say what is wrong."""

from __future__ import annotations

import itertools
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import shapely
import shapely.affinity
from shapely.geometry import MultiPolygon, Polygon, box, mapping, shape
from shapely.geometry.base import BaseGeometry

from amberwatch.errors import AntimeridianWarning, AOIError, RepairedGeometryWarning

# Web Mercator is undefined beyond this latitude; web-map tiles stop here.
MAX_MERCATOR_LAT_DEG = 85.0511287798066
# Edges are densified to this length before the geodesic area, so the area is that of the lon/lat polygon
# the tiles cover (a -180..180 edge would otherwise be a zero-length geodesic and a world AOI 0 km²).
AREA_SEGMENT_DEG = 0.5
# GeoJSON nests a FeatureCollection, a Feature and a few GeometryCollections at most; deeper is refused.
MAX_NESTING = 32
# A repaired polygon may not cover more than its own shell does (a hole outside the shell would become land).
REPAIR_GROWTH_TOLERANCE = 1e-6


@dataclass(frozen=True)
class AOI:
    """An area of interest: a valid Polygon/MultiPolygon in WGS84 lon/lat and where it came from."""

    geometry: BaseGeometry
    name: str

    @property
    def bounds_deg(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees."""
        return tuple(float(v) for v in self.geometry.bounds)  # type: ignore[return-value]

    def to_geojson(self) -> str:
        """Canonical GeoJSON text of the geometry (stable, used to recognise the same AOI on resume)."""
        geom = shapely.set_precision(self.geometry, 1e-9)
        return json.dumps(mapping(shapely.normalize(geom)), sort_keys=True, separators=(",", ":"))


def aoi_from_bbox(text: str) -> AOI:
    """Parse ``W,S,E,N`` (degrees) into an AOI, naming the bad value on error."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        west, south, east, north = (float(p) for p in parts)
    except ValueError:
        raise AOIError(f"bbox {text!r} must be four numbers W,S,E,N in degrees") from None
    _check_lonlat([(west, south), (east, north)], f"bbox {text!r}")
    if not (west < east and south < north):
        raise AOIError(f"bbox {text!r} is empty: need west < east and south < north")
    return AOI(box(west, south, east, north), name=f"bbox {text}")


def read_aoi(source: dict | str | os.PathLike[str], *, polygons_only: bool = False) -> AOI:
    """An AOI from a parsed GeoJSON dict, GeoJSON text (starting with '{') or a file path."""
    if isinstance(source, dict):
        return aoi_from_geojson(source, name="area", polygons_only=polygons_only)
    text = str(source)
    if isinstance(source, os.PathLike) or not text.lstrip().startswith("{"):
        return load_aoi(text, polygons_only=polygons_only)
    return aoi_from_geojson(_parse_json(text, "GeoJSON text"), name="area", polygons_only=polygons_only)


def load_aoi(path: str | os.PathLike[str], *, polygons_only: bool = False) -> AOI:
    """Read a GeoJSON FeatureCollection/Feature/Geometry file holding Polygons or MultiPolygons.

    Other geometries are skipped, or refused with AOIError when polygons_only is set.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AOIError(f"AOI file {str(p)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AOIError(f"AOI file {str(p)!r} cannot be read: {exc}") from exc
    return aoi_from_geojson(_parse_json(text, f"AOI file {str(p)!r}"), name=str(p), polygons_only=polygons_only)


def _parse_json(text: str, what: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AOIError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise AOIError(f"{what} is nested too deeply to be a GeoJSON AOI") from None


def aoi_from_geojson(obj: object, *, name: str = "<geojson>", polygons_only: bool = False) -> AOI:
    """Build an AOI from a parsed GeoJSON object (its polygons, lon/lat, repaired when invalid).

    Non-polygon geometries are skipped, or refused with AOIError naming their type when polygons_only is set.
    """
    if not isinstance(obj, dict) or "type" not in obj:
        raise AOIError(f"AOI {name!r} is not a GeoJSON object (no 'type' member)")
    crs_name = _crs_name(obj)
    geometries = list(_iter_geometries(obj, name))
    polygons: list[Polygon] = []
    for geom_obj in geometries:
        if not isinstance(geom_obj, dict) or geom_obj.get("type") not in ("Polygon", "MultiPolygon"):
            if polygons_only:
                kind = geom_obj.get("type") if isinstance(geom_obj, dict) else type(geom_obj).__name__
                raise AOIError(f"AOI {name!r} holds a {kind}, not a Polygon or MultiPolygon")
            continue
        coords = geom_obj.get("coordinates")
        _check_lonlat(_flatten_positions(coords, name), f"AOI {name!r}", crs_name)
        try:
            geom = shape(geom_obj)
        except (ValueError, TypeError, AttributeError, IndexError, shapely.errors.GEOSException) as exc:
            raise AOIError(f"AOI {name!r} has a malformed {geom_obj.get('type')}: {exc}") from None
        if geom.is_empty:
            continue
        for part in geom.geoms if isinstance(geom, MultiPolygon) else [geom]:
            polygons.extend(split_antimeridian(part, name))
    if not polygons:
        kinds = sorted({str(g.get("type")) for g in geometries if isinstance(g, dict)}) or ["none"]
        raise AOIError(f"AOI {name!r} holds no non-empty Polygon or MultiPolygon (found: {', '.join(kinds)})")
    merged = _valid_union(polygons, name)
    if merged.is_empty or merged.area == 0:
        raise AOIError(f"AOI {name!r} has zero area")
    return AOI(merged, name=name)


def area_km2(geometry: BaseGeometry) -> float:
    """Area on the WGS84 ellipsoid of a lon/lat (Multi)Polygon whose edges are straight in lon/lat, in km².

    Measured in 90° wide slices with densified edges: no slice circles a pole or spans half the globe,
    so the geodesic area of each is the area the AOI's tiles cover, even for a world-wide AOI.
    """
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    total_m2 = 0.0
    for west in (-180.0, -90.0, 0.0, 90.0):
        piece = shapely.intersection(geometry, box(west, -90.0, west + 90.0, 90.0))
        if piece.is_empty:
            continue
        for part in getattr(piece, "geoms", [piece]):
            if isinstance(part, (Polygon, MultiPolygon)):
                area_m2, _ = geod.geometry_area_perimeter(shapely.segmentize(part, AREA_SEGMENT_DEG))
                total_m2 += abs(area_m2)
    return total_m2 / 1e6


def split_antimeridian(polygon: Polygon, name: str = "<geojson>") -> list[Polygon]:
    """Cut a polygon whose edges jump across the antimeridian (RFC 7946: > 180° of longitude) into parts.

    An edge from 179.9 to -179.9 means the short way over 180°, as RFC 7946 readers take it; read
    literally it would span the whole globe. Edges from -180 to 180 exactly (world-wide AOIs) stay as given.
    """
    shell = _unwrap(list(polygon.exterior.coords), name)
    if shell is None:
        return [polygon]
    centre = (min(x for x, _ in shell) + max(x for x, _ in shell)) / 2
    holes = [_align(_unwrap(list(r.coords), name) or list(r.coords), centre) for r in polygon.interiors]
    whole = shapely.make_valid(Polygon(shell, holes))
    parts: list[Polygon] = []
    for k in (-1, 0, 1):
        piece = shapely.intersection(whole, box(-180 + 360 * k, -90, 180 + 360 * k, 90))
        piece = shapely.affinity.translate(piece, xoff=-360 * k)
        parts.extend(g for g in getattr(piece, "geoms", [piece]) if isinstance(g, Polygon) and g.area > 0)
    warnings.warn(
        f"AOI {name!r} crosses the antimeridian: cut at 180° into {len(parts)} parts (RFC 7946)",
        AntimeridianWarning,
        stacklevel=3,
    )
    return parts


def _unwrap(ring: list[tuple[float, ...]], name: str) -> list[tuple[float, float]] | None:
    """The ring with continuous longitudes (may pass ±180), or None when no edge crosses the antimeridian."""
    if not any(180.0 < abs(b[0] - a[0]) < 360.0 for a, b in itertools.pairwise(ring)):
        return None
    out = [(ring[0][0], ring[0][1])]
    for a, b in itertools.pairwise(ring):
        step, lat = b[0] - a[0], b[1]
        step = step - 360.0 if step > 180.0 else step + 360.0 if step < -180.0 else step
        out.append((out[-1][0] + step, lat))
    if abs(out[-1][0] - out[0][0]) > 1e-9:
        raise AOIError(
            f"AOI {name!r} has a ring that circles a pole across the antimeridian; cut it at 180° into parts "
            "that each stay between -180 and 180 (RFC 7946) and give them as a MultiPolygon"
        )
    return out


def _align(ring: list[tuple[float, float]], centre: float) -> list[tuple[float, float]]:
    shift = 360.0 * round((centre - ring[0][0]) / 360.0)
    return [(x + shift, y) for x, y in ring]


def _valid_union(polygons: list[Polygon], name: str) -> BaseGeometry:
    invalid = [i for i, p in enumerate(polygons) if not p.is_valid]
    if invalid:
        reason = shapely.is_valid_reason(polygons[invalid[0]])
        polygons = [p if p.is_valid else _repair(p, i, name) for i, p in enumerate(polygons)]
        warnings.warn(
            f"AOI {name!r}: invalid polygon ({reason}) repaired with make_valid", RepairedGeometryWarning, stacklevel=3
        )
    merged = shapely.union_all(polygons)
    # make_valid can yield lines/points beside polygons (collapsed parts): keep only areas.
    parts = [g for g in getattr(merged, "geoms", [merged]) if isinstance(g, (Polygon, MultiPolygon))]
    flat: list[Polygon] = []
    for g in parts:
        flat.extend(g.geoms if isinstance(g, MultiPolygon) else [g])
    if not flat:
        raise AOIError(f"AOI {name!r} has no area left after repairing its geometry")
    return flat[0] if len(flat) == 1 else MultiPolygon(flat)


def _repair(polygon: Polygon, index: int, name: str) -> BaseGeometry:
    """make_valid of one polygon, refused when the repair covers more than the polygon's own shell."""
    repaired = shapely.make_valid(polygon)
    shell = shapely.make_valid(Polygon(polygon.exterior))
    if repaired.area > shell.area * (1 + REPAIR_GROWTH_TOLERANCE):
        raise AOIError(
            f"AOI {name!r}: polygon {index + 1} (near {_near(polygon)}) is invalid "
            f"({shapely.is_valid_reason(polygon)}) and repairing it would grow it from {area_km2(shell):,.3f} to "
            f"{area_km2(repaired):,.3f} km²; fix it (a hole must lie inside its shell)"
        )
    return repaired


def _near(polygon: Polygon) -> str:
    x, y = polygon.exterior.coords[0][:2]
    return f"{x:g}, {y:g}"


def _iter_geometries(obj: dict, name: str, depth: int = 0):
    if depth > MAX_NESTING:
        raise AOIError(f"AOI {name!r} nests Features or GeometryCollections more than {MAX_NESTING} deep")
    if not isinstance(obj, dict):
        raise AOIError(f"AOI {name!r}: a geometry is {json.dumps(obj)[:40]}, not a GeoJSON object")
    kind = obj.get("type")
    if kind == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            raise AOIError(f"AOI {name!r}: FeatureCollection without a 'features' list")
        for feature in features:
            if isinstance(feature, dict):
                yield from _iter_geometries(feature, name, depth + 1)
    elif kind == "Feature":
        if obj.get("geometry") is not None:
            yield from _iter_geometries(obj["geometry"], name, depth + 1)
    elif kind == "GeometryCollection":
        for geom in obj.get("geometries") or []:
            if isinstance(geom, dict):
                yield from _iter_geometries(geom, name, depth + 1)
    elif kind in ("Polygon", "MultiPolygon", "Point", "MultiPoint", "LineString", "MultiLineString"):
        yield obj
    else:
        raise AOIError(f"AOI {name!r}: unknown GeoJSON type {kind!r}")


def _flatten_positions(coords: object, name: str) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    stack = [coords]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)) and len(item) >= 2 and all(isinstance(v, (int, float)) for v in item):
            out.append((float(item[0]), float(item[1])))
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        else:
            raise AOIError(f"AOI {name!r}: malformed coordinates near {item!r}")
    return out


def _crs_name(obj: dict) -> str | None:
    crs = obj.get("crs")
    if isinstance(crs, dict):
        props = crs.get("properties") or {}
        return str(props.get("name") or crs)
    return None


def _check_lonlat(positions: list[tuple[float, float]], what: str, crs_name: str | None = None) -> None:
    for lon, lat in positions:
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            _refuse_out_of_range(lon, lat, what, crs_name)
        if abs(lat) > MAX_MERCATOR_LAT_DEG:
            raise AOIError(f"{what} reaches latitude {lat:g}, beyond the web-map limit of ±{MAX_MERCATOR_LAT_DEG:.4f}")


def _refuse_out_of_range(lon: float, lat: float, what: str, crs_name: str | None) -> None:
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise AOIError(f"{what} has coordinates ({lon:g}, {lat:g}) that are not finite numbers")
    if crs_name or not (abs(lon) <= 360.0 and abs(lat) <= 180.0):
        hint = f" (the file declares CRS {crs_name!r})" if crs_name else ""
        raise AOIError(
            f"{what} has coordinates ({lon:g}, {lat:g}) outside the lon/lat range{hint}: it looks like a "
            "projected CRS (e.g. UTM metres); give WGS84 longitude/latitude as GeoJSON requires (RFC 7946)"
        )
    if not -180.0 <= lon <= 180.0:
        raise AOIError(
            f"{what} has longitude {lon:g} (at latitude {lat:g}), beyond ±180: give longitudes from -180 to 180 "
            f"(here {(lon + 180.0) % 360.0 - 180.0:g}); an edge from 179.9 to -179.9 crosses the antimeridian "
            "(RFC 7946)"
        )
    raise AOIError(f"{what} has latitude {lat:g} (at longitude {lon:g}), beyond ±90: are lon and lat swapped?")


def aoi_bounds(aoi_geojson: str | None) -> list[float] | None:
    """[west, south, east, north] of a scan's AOI (GeoJSON geometry, Feature or FeatureCollection), else None."""
    try:
        obj = json.loads(aoi_geojson or "")
        if obj.get("type") == "FeatureCollection":
            obj = obj["features"][0]["geometry"]
        elif obj.get("type") == "Feature":
            obj = obj["geometry"]
        bounds = [float(v) for v in shape(obj).bounds]
    except Exception:  # a malformed AOI only costs the map its initial view and overviews
        return None
    return bounds if len(bounds) == 4 and all(math.isfinite(v) for v in bounds) else None
