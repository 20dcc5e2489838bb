"""Change over time in the story: then-and-now site pairs and the headline figures, from the project's timeline.

The rule (stated on the page): between the THEN and NOW imagery dates a site is new when its place was scanned with
imagery at THEN and nothing was found there, and growing when its area grew by more than the timeline's tolerance
(``results.timeline.site_status`` on those two dates). Hectares dug are the NOW area of new sites plus the growth of
growing sites. A site without imagery at either date is left out; so are sites reviewers found not mining.
"""

from __future__ import annotations

import sqlite3
import warnings
from dataclasses import dataclass

from amberwatch.errors import AmberwatchWarning, InvalidInputError, NotFoundError
from amberwatch.results.public import PublicDetection, public_detections
from amberwatch.results.records import Scan
from amberwatch.results.store import finished_scans, get_scan
from amberwatch.results.timeline import DEFAULT_REL_TOLERANCE, Site, Timeline, load_timeline, site_status
from amberwatch.review.feedback import review_states

DEFAULT_PAIRS = 2
MAX_PAIRS = 12
CHANGE_KINDS = ("new", "growing")


@dataclass(frozen=True)
class ChangeChoice:
    """What the author asked for: the two dates (None: the timeline's first and last), sites or a count of pairs."""

    then: str | None = None
    now: str | None = None
    site_ids: tuple[int, ...] = ()
    count: int | None = None  # None: DEFAULT_PAIRS

    @property
    def asked(self) -> bool:
        """Whether the author asked for change at all (then a project without dated scans is an error)."""
        return bool(self.then or self.now or self.site_ids or self.count)


@dataclass(frozen=True)
class SiteChange:
    """One timeline site between THEN and NOW: its hectares at both dates, its kind and the hectares dug."""

    site: Site
    then_ha: float
    now_ha: float
    kind: str  # new | growing | stable | shrinking | gone

    @property
    def dug_ha(self) -> float:
        """Hectares dug between the dates: all of a new site, the growth of a growing one, else 0."""
        return max(0.0, self.now_ha - self.then_ha) if self.kind in CHANGE_KINDS else 0.0


@dataclass(frozen=True)
class Headline:
    """The headline figures: new sites and hectares dug between two dates (the area summed, then rounded)."""

    n_new: int
    dug_ha: float
    then: str
    now: str


@dataclass(frozen=True)
class PairSite:
    """A then-and-now pair: the site's change and its detections at each date (NOW's largest first)."""

    change: SiteChange
    then_detections: tuple[PublicDetection, ...]
    now_detections: tuple[PublicDetection, ...]


@dataclass(frozen=True)
class StoryChange:
    """What the story shows of change: the dates' scans, the headline figures and the pairs."""

    then_scan: Scan
    now_scan: Scan
    headline: Headline
    pairs: tuple[PairSite, ...]

    def detections(self) -> list[PublicDetection]:
        """Every detection the pairs show, NOW's first."""
        return [d for p in self.pairs for d in (*p.now_detections, *p.then_detections)]


def site_change(site: Site, then: str, now: str, rel_tolerance: float = DEFAULT_REL_TOLERANCE) -> SiteChange | None:
    """The site's change from THEN to NOW; None when either date has no imagery at its place."""
    then_ha, now_ha = site.area_ha.get(then), site.area_ha.get(now)
    if then_ha is None or now_ha is None:
        return None
    return SiteChange(site, then_ha, now_ha, site_status([then_ha, now_ha], rel_tolerance))


def changes_between(timeline: Timeline, then: str, now: str) -> list[SiteChange]:
    """Every site with imagery at both dates, most hectares dug first (then the largest at NOW, then site id)."""
    found = [c for c in (site_change(s, then, now) for s in timeline.sites) if c is not None]
    return sorted(found, key=lambda c: (-c.dug_ha, -c.now_ha, c.site.site_id))


def headline_figures(timeline: Timeline, then: str, now: str) -> Headline:
    """N new sites and X ha dug from THEN to NOW (new sites' area plus growing sites' growth)."""
    changes = changes_between(timeline, then, now)
    n_new = sum(c.kind == "new" for c in changes)
    return Headline(n_new, sum(c.dug_ha for c in changes), then, now)


def choose_dates(timeline: Timeline, then: str | None, now: str | None) -> tuple[str, str]:
    """THEN and NOW among the timeline's dates (default: its first and last); an unknown or reversed date is an
    InvalidInputError naming it and the dates there are."""
    dates = timeline.dates
    then, now = then or dates[0], now or dates[-1]
    for name, value in (("--then", then), ("--now", now)):
        if value not in dates:
            raise InvalidInputError(f"{name} {value!r} is not a scanned imagery date; the dates are {', '.join(dates)}")
    if then >= now:
        raise InvalidInputError(f"--then {then!r} must be an earlier imagery date than --now {now!r}")
    return then, now


def select_pair_sites(timeline: Timeline, then: str, now: str, choice: ChangeChoice) -> list[SiteChange]:
    """The sites to pair: those named (by timeline site id, in order), else the ones with most hectares dug."""
    changes = changes_between(timeline, then, now)
    if choice.site_ids:
        by_id = {c.site.site_id: c for c in changes}
        known = {s.site_id for s in timeline.sites}
        for i in choice.site_ids:
            if i not in known:
                raise NotFoundError(f"site {i} is not a site of the timeline (site ids: amberwatch timeline --json)")
            if i not in by_id:
                raise InvalidInputError(f"site {i} has no imagery at {then} or {now}: it cannot be shown then and now")
        return [by_id[i] for i in choice.site_ids]
    return [c for c in changes if c.kind in CHANGE_KINDS][: choice.count or DEFAULT_PAIRS]


def load_change(conn: sqlite3.Connection, scan_id: int | None, choice: ChangeChoice) -> StoryChange | None:
    """The story's change over the AOI of ``scan_id`` (else the latest finished scan's); None for a project without
    scans at two imagery dates unless the author asked for change (then that is an InvalidInputError)."""
    reviews = review_states(conn)
    aoi = get_scan(conn, scan_id).aoi_geojson if scan_id is not None else None
    try:
        timeline = load_timeline(conn, reviews, aoi_geojson=aoi)
    except InvalidInputError as exc:
        if choice.asked:
            raise InvalidInputError(f"the story cannot show change over time: {exc}") from exc
        if any(s.imagery_date for s in finished_scans(conn)):
            warnings.warn(AmberwatchWarning(f"no then-and-now in the story: {exc}"), stacklevel=2)
        return None
    then, now = choose_dates(timeline, choice.then, choice.now)
    scans = dict(zip(timeline.dates, timeline.scan_ids, strict=True))
    then_scan, now_scan = get_scan(conn, scans[then]), get_scan(conn, scans[now])
    pairs = [_pair(conn, reviews, c, then_scan.id, now_scan.id) for c in select_pair_sites(timeline, then, now, choice)]
    return StoryChange(then_scan, now_scan, headline_figures(timeline, then, now), tuple(pairs))


def _pair(conn: sqlite3.Connection, reviews, change: SiteChange, then_id: int, now_id: int) -> PairSite:
    """A pair's detections at both dates (public ones, largest first)."""
    found = public_detections(conn, reviews, ids=list(change.site.detection_ids), order="largest")
    return PairSite(
        change,
        tuple(d for d in found if d.scan_id == then_id),
        tuple(d for d in found if d.scan_id == now_id),
    )


def pair_count(value: int | None) -> int | None:
    """A --pairs count checked to 1..MAX_PAIRS."""
    if value is not None and not 1 <= value <= MAX_PAIRS:
        raise InvalidInputError(f"--pairs {value} must be 1..{MAX_PAIRS}")
    return value
