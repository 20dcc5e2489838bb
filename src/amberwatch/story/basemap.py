"""An optional online basemap under the story map: an xyzservices preset resolved to a URL and a credit.

Off by default: the page then loads nothing from outside its folder. With ``basemap: NAME`` in the article's
front matter, the map asks the provider for tiles (and so works offline only without it).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from amberwatch.imagery.xyz import basemap_preset

TAG_RE = re.compile(r"<[^>]+>")
LEAFLET_SUBDOMAINS = "abc"  # what Leaflet fills '{s}' with when the preset names none


@dataclass(frozen=True)
class Basemap:
    """A resolved preset: Leaflet URL template, plain-text credit, highest zoom with tiles, subdomains."""

    name: str
    url: str
    attribution: str
    max_zoom: int | None
    subdomains: str | None


def _credit(provider: dict) -> str:
    """The provider's credit as plain text ('© OpenStreetMap contributors'), links dropped."""
    rich = provider.get("html_attribution")
    text = html.unescape(TAG_RE.sub("", str(rich))) if rich else str(provider.get("attribution") or "")
    return " ".join(text.split())


def resolve_basemap(name: str) -> Basemap:
    """The xyzservices preset called name, or InvalidInputError naming it (unknown, or needing an API key)."""
    provider = basemap_preset(name)
    url = provider.build_url(fill_subdomain=False, scale_factor="{r}")
    max_zoom = provider.get("max_zoom")
    subdomains = provider.get("subdomains")
    return Basemap(
        name=str(provider.name),
        url=url,
        attribution=_credit(provider),
        max_zoom=int(max_zoom) if isinstance(max_zoom, (int, float)) else None,
        subdomains="".join(subdomains) if subdomains else None,
    )


def tile_origins(basemap: Basemap) -> tuple[str, ...]:
    """The origins ('https://a.tile.example.org') the basemap's tiles come from, one per subdomain."""
    subdomains = (basemap.subdomains or LEAFLET_SUBDOMAINS) if "{s}" in basemap.url else ""
    hosts = [basemap.url.replace("{s}", s) for s in subdomains] or [basemap.url]
    origins = []
    for url in hosts:
        parts = urlsplit(url)
        origins.append(f"{parts.scheme}://{parts.netloc}")
    return tuple(dict.fromkeys(origins))
