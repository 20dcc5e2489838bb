"""What readers see about a site: its place, imagery date, hectares and how sure we are, in plain words."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from amberwatch.results.public import PublicDetection

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class SiteText:
    """The texts of one site: place (as shown), coordinates, date, hectares, status, caption and alt text."""

    place: str
    coords: str
    date_text: str | None
    hectares: str
    status: str
    caption: str
    alt: str


def format_place(lat_deg: float, lon_deg: float) -> str:
    """Coordinates as a reader sees them: 51.3012°N 26.8721°E."""
    ns = "N" if lat_deg >= 0 else "S"
    ew = "E" if lon_deg >= 0 else "W"
    return f"{abs(lat_deg):.4f}°{ns} {abs(lon_deg):.4f}°{ew}"


def format_date(text: str | None) -> str | None:
    """An ISO date as '5 Oct 2015' (other text is shown as it is)."""
    if not text:
        return None
    try:
        d = date.fromisoformat(str(text)[:10])
    except ValueError:
        return str(text)
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


def format_hectares(area_ha: float) -> str:
    """Hectares rounded as the map rounds them (``ha`` in web/static/common.js): 0.42 ha, 1.83 ha, 127 ha."""
    return f"{format_total_hectares(area_ha)} ha"


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 fragment', '2 fragments', '1,200 sites': a count with its noun in the right number."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def format_status(site: PublicDetection) -> str:
    """How sure the page is about a site, for readers: confirmed by a reviewer, else the model's confidence."""
    if site.confirmed:
        return "mining confirmed by a reviewer"
    return f"likely mining · model confidence {round(site.mean_prob * 100)}%"


def site_texts(sites: Sequence[PublicDetection], places: dict[int, str]) -> dict[int, SiteText]:
    """Texts of each site by id; its place is the article's name for it, else the nearest village, else coordinates."""
    out: dict[int, SiteText] = {}
    for s in sites:
        coords = format_place(s.centroid_lat, s.centroid_lon)
        place = places.get(s.id) or s.place or coords
        when, ha, status = format_date(s.capture_date), format_hectares(s.area_ha), format_status(s)
        caption = " · ".join(p for p in (place, when, ha, status) if p)
        near = f"{place} ({coords})" if place != coords else coords
        seen = f", imagery of {when}" if when else ""
        kind = "an amber-mining site confirmed by a reviewer" if s.confirmed else "a likely amber-mining site"
        alt = f"Satellite image of {kind} of {ha}, {_where(place, near)}{seen}"
        out[s.id] = SiteText(place, coords, when, ha, status, caption, alt)
    return out


def _where(place: str, near: str) -> str:
    """'at' before coordinates or a name; 'near X', '2.3 km NE of X' and 'in X' say it themselves."""
    return near if place.startswith(("in ", "near ")) or " km " in place else f"at {near}"


def format_total_hectares(area_ha: float) -> str:
    """A total of hectares rounded as the map rounds its totals (``ha`` in web/static/common.js): 0.42, 3.10, 127."""
    # JS toFixed rounds the float's exact value half up (0.125 -> 0.13); Python's format would round half to even.
    step = Decimal(1) if area_ha >= 100 else Decimal("0.01")
    return str(Decimal(area_ha).quantize(step, rounding=ROUND_HALF_UP))


def headline_text(n_new: int, dug_ha: float, then: str) -> str:
    """'3 new sites, 4.20 ha dug since 26 Jun 2019'."""
    return f"{plural(n_new, 'new site')}, {format_total_hectares(dug_ha)} ha dug since {format_date(then)}"


@dataclass(frozen=True)
class PairText:
    """The texts of a then-and-now pair: each half's label and alt text, what changed, the map's caption."""

    then_label: str
    now_label: str
    change: str
    then_alt: str
    now_alt: str
    caption: str


def pair_text(site: SiteText, then: str, now: str, then_ha: float, now_ha: float, kind: str) -> PairText:
    """Texts of a pair from the site's texts (its place), the two dates, the hectares at each and its change kind."""
    when_then, when_now = format_date(then) or then, format_date(now) or now
    then_found = format_hectares(then_ha) if then_ha > 0 else "no mining found"
    grew = f"grew by {format_hectares(max(now_ha - then_ha, 0.0))}"
    change = {"new": "new site", "growing": grew}.get(kind, kind)
    near = _where(site.place, f"{site.place} ({site.coords})" if site.place != site.coords else site.coords)
    return PairText(
        then_label=f"{when_then} · {then_found}",
        now_label=f"{when_now} · {format_hectares(now_ha)}",
        change=change,
        then_alt=f"Satellite image of the ground {near} on {when_then}: {then_found}",
        now_alt=f"The same ground on {when_now}, the {format_hectares(now_ha)} mining site outlined",
        caption=f"{site.place} · {when_then}: {then_found} → {when_now}: {format_hectares(now_ha)} ({change})",
    )
