"""The story article: a Markdown file with YAML front matter (title, lead, fragments, map view, byline, date,
place names, language, an optional online basemap)."""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from amberwatch.errors import AmberwatchWarning, InvalidInputError, NotFoundError
from amberwatch.imagery.basemap import Basemap, resolve_basemap

FRONT_MATTER_RE = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)(.*)\Z", re.DOTALL)
H1_RE = re.compile(r"^#[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
RANKED_RE = re.compile(r"^\s*(largest|most confident)\s+(\d+)\s*$", re.IGNORECASE)
DEFAULT_FRAGMENT_COUNT = 12
MAX_FRAGMENTS = 60
KNOWN_KEYS = {"title", "lead", "byline", "date", "fragments", "map", "places", "lang", "basemap"}
LANG_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


@dataclass(frozen=True)
class FragmentChoice:
    """Which detections become fragments: explicit ids, or the top N by 'largest' or 'most confident'."""

    ids: tuple[int, ...] = ()
    rank_by: str | None = None  # "largest" | "most confident" | None for explicit ids
    count: int = DEFAULT_FRAGMENT_COUNT


@dataclass(frozen=True)
class MapView:
    """The map's start view; None centre means fit the fragments."""

    center_lat_lon: tuple[float, float] | None = None
    zoom: float | None = None


@dataclass(frozen=True)
class Article:
    """A parsed article: front matter fields and the Markdown body."""

    path: Path
    title: str
    lead: str
    body_markdown: str
    fragments: FragmentChoice
    map_view: MapView
    byline: str | None = None
    date: str | None = None
    places: dict[int, str] = field(default_factory=dict)
    lang: str = "en"
    basemap: Basemap | None = None  # None: the page loads nothing from outside its folder
    map_url: str | None = None  # the live map the page links to (story build --map-url), not from the front matter


def read_article(path: str | os.PathLike[str]) -> Article:
    """Read and validate an article file, raising NotFoundError / InvalidInputError naming the file and value."""
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"article {str(p)!r} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"article {str(p)!r} cannot be read as UTF-8 text ({exc})") from exc
    return parse_article(text, p)


def parse_article(text: str, path: Path) -> Article:
    """Split front matter from the body and validate every field."""
    m = FRONT_MATTER_RE.match(text)
    if not m:
        raise InvalidInputError(
            f"article {str(path)!r} has no YAML front matter: it must start with a '---' line and close with another"
        )
    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"article {str(path)!r}: front matter is not valid YAML ({exc})") from exc
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise InvalidInputError(f"article {str(path)!r}: front matter must be a mapping of keys, got {meta!r}")
    unknown = sorted(str(k) for k in meta if k not in KNOWN_KEYS)
    if unknown:
        warnings.warn(
            AmberwatchWarning(
                f"article {str(path)!r}: front matter key(s) {', '.join(unknown)} ignored"
                f" (known: {', '.join(sorted(KNOWN_KEYS))})"
            ),
            stacklevel=3,
        )
    body = m.group(2)
    if not body.strip():
        raise InvalidInputError(f"article {str(path)!r} has front matter but no text")
    title = _text(meta, "title", path)
    if not title:
        heading = H1_RE.search(body)
        if heading is None:
            raise InvalidInputError(f"article {str(path)!r}: front matter needs a 'title' (or the text a '# Heading')")
        title = heading.group(1).strip()
        body = body[: heading.start()] + body[heading.end() :]
    places = _places(meta.get("places"), path)
    lang = _text(meta, "lang", path) or "en"
    if not LANG_RE.match(lang):
        raise InvalidInputError(f"article {str(path)!r}: lang {lang!r} is not a language tag such as 'en' or 'uk'")
    choice, inline_places = _fragments(meta.get("fragments"), path)
    return Article(
        path=path,
        title=title,
        lead=_text(meta, "lead", path) or "",
        body_markdown=body,
        fragments=choice,
        map_view=_map_view(meta.get("map"), path),
        byline=_text(meta, "byline", path),
        date=_text(meta, "date", path),
        places={**places, **inline_places},
        lang=lang,
        basemap=_basemap(meta.get("basemap"), path),
    )


def _text(meta: dict[str, Any], key: str, path: Path) -> str | None:
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise InvalidInputError(f"article {str(path)!r}: {key!r} must be text, got {value!r}")
    return str(value).strip() or None


def _fragment_id(value: Any, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"article {str(path)!r}: fragment id {value!r} is not a positive integer detection id")
    return value


def _fragments(value: Any, path: Path) -> tuple[FragmentChoice, dict[int, str]]:
    if value is None:
        return FragmentChoice(rank_by="largest"), {}
    if isinstance(value, str):
        m = RANKED_RE.match(value)
        if not m:
            raise InvalidInputError(
                f"article {str(path)!r}: fragments {value!r} must be a list of detection ids,"
                " 'largest N' or 'most confident N'"
            )
        count = int(m.group(2))
        if not 1 <= count <= MAX_FRAGMENTS:
            raise InvalidInputError(f"article {str(path)!r}: fragments {value!r}: N must be 1..{MAX_FRAGMENTS}")
        return FragmentChoice(rank_by=m.group(1).lower(), count=count), {}
    if isinstance(value, list) and value:
        ids: list[int] = []
        places: dict[int, str] = {}
        for item in value:
            if isinstance(item, dict):
                if "id" not in item:
                    raise InvalidInputError(f"article {str(path)!r}: fragment entry {item!r} needs an 'id'")
                fid = _fragment_id(item["id"], path)
                if item.get("place"):
                    places[fid] = str(item["place"]).strip()
            else:
                fid = _fragment_id(item, path)
            if fid in ids:
                raise InvalidInputError(f"article {str(path)!r}: fragment id {fid} is listed twice")
            ids.append(fid)
        if len(ids) > MAX_FRAGMENTS:
            raise InvalidInputError(f"article {str(path)!r}: {len(ids)} fragments listed; at most {MAX_FRAGMENTS}")
        return FragmentChoice(ids=tuple(ids), count=len(ids)), places
    raise InvalidInputError(
        f"article {str(path)!r}: fragments {value!r} must be a non-empty list of detection ids,"
        " 'largest N' or 'most confident N'"
    )


def _places(value: Any, path: Path) -> dict[int, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"article {str(path)!r}: places {value!r} must map detection ids to place names")
    return {_fragment_id(k, path): str(v).strip() for k, v in value.items() if v is not None}


def _basemap(value: Any, path: Path) -> Basemap | None:
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("", "none", "off")):
        return None
    if not isinstance(value, str):
        raise InvalidInputError(
            f"article {str(path)!r}: basemap {value!r} must be an xyzservices preset name, e.g. 'OpenStreetMap.Mapnik'"
        )
    try:
        return resolve_basemap(value.strip())
    except InvalidInputError as exc:
        raise InvalidInputError(f"article {str(path)!r}: {exc}") from exc


def _map_view(value: Any, path: Path) -> MapView:
    if value is None:
        return MapView()
    if not isinstance(value, dict):
        raise InvalidInputError(f"article {str(path)!r}: map {value!r} must be a mapping with center and zoom")
    unknown = sorted(str(k) for k in value if k not in ("center", "zoom"))
    if unknown:
        raise InvalidInputError(f"article {str(path)!r}: unknown map key(s) {', '.join(unknown)} (known: center, zoom)")
    center = value.get("center")
    zoom = value.get("zoom")
    lat_lon: tuple[float, float] | None = None
    if center is not None:
        if (
            not isinstance(center, list)
            or len(center) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in center)
            or not (-90 <= center[0] <= 90 and -180 <= center[1] <= 180)
        ):
            raise InvalidInputError(f"article {str(path)!r}: map center {center!r} must be [lat, lon] in degrees")
        lat_lon = (float(center[0]), float(center[1]))
    if zoom is not None:
        if isinstance(zoom, bool) or not isinstance(zoom, (int, float)) or not 1 <= zoom <= 20:
            raise InvalidInputError(f"article {str(path)!r}: map zoom {zoom!r} must be a number 1..20")
        zoom = float(zoom)
    if (lat_lon is None) != (zoom is None):
        raise InvalidInputError(f"article {str(path)!r}: map {value!r} needs both center and zoom")
    return MapView(lat_lon, zoom)
