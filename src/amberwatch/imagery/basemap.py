"""The one basemap resolver: an xyzservices preset name -> a ``Basemap`` (Leaflet URL template, credits, zooms).

An online basemap draws under the map (``serve --basemap``) or the story (``basemap:`` in its front matter); the
front ends turn a ``Basemap`` into their own page settings and content-security policy.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from amberwatch.errors import InvalidInputError
from amberwatch.imagery.xyz import basemap_preset

TAG_RE = re.compile(r"<[^>]+>")
LEAFLET_SUBDOMAINS = "abc"  # what Leaflet fills '{s}' with when the preset names none


@dataclass(frozen=True)
class Basemap:
    """A resolved preset: Leaflet URL template ('{r}' kept), plain-text and HTML credit, highest zoom, subdomains."""

    name: str
    url: str
    attribution: str
    attribution_html: str
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
    max_zoom = provider.get("max_zoom")
    subdomains = provider.get("subdomains")
    rich = provider.get("html_attribution") or html.escape(str(provider.get("attribution") or name))
    return Basemap(
        name=str(provider.name),
        url=provider.build_url(fill_subdomain=False, scale_factor="{r}"),
        attribution=_credit(provider),
        attribution_html=str(rich),
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


def basemap_config(name: str) -> dict[str, Any]:
    """The map's config of basemap preset ``name`` (``imagery.basemap.resolve_basemap``): name, Leaflet URL template,
    subdomains, max zoom, HTML attribution and the origin the page must be allowed to load images from.

    InvalidInputError naming the preset when it is unknown, needs an API key or has no http(s) tile URL.
    """
    basemap = resolve_basemap(name)
    url = basemap.url.replace("{r}", "")  # the map asks for standard-resolution tiles
    origin = re.match(r"^https?://[^/]+", url)
    if origin is None:
        raise InvalidInputError(f"basemap {name!r} has no http(s) tile URL ({url!r})")
    return {
        "name": basemap.name,
        "url": url,
        "subdomains": basemap.subdomains or LEAFLET_SUBDOMAINS,
        "max_zoom": 19 if basemap.max_zoom is None else basemap.max_zoom,
        "attribution": basemap.attribution_html,
        "origin": origin.group(0).replace("{s}", "*"),
    }
