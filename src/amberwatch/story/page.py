"""The story's index.html: header, body with packed fragment blocks, the map section, legend and footer."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from string import Template

import mercantile

from amberwatch import __version__
from amberwatch.imagery.basemap import Basemap, tile_origins
from amberwatch.results.public import PublicDetection
from amberwatch.story.article import Article
from amberwatch.story.captions import PairText, SiteText, format_date, plural
from amberwatch.story.images import FragmentImage
from amberwatch.story.markup import render_body
from amberwatch.story.packing import DESKTOP, PHONE, Placement, check_packing, pack_block, size_classes_by_area

# The page runs and styles itself only with its own files (the fragments' grid placements are in layout.css).
CSP_FIXED = (
    "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-src 'none'; form-action 'none'"
)
# An amber dot as the tab icon, inline so the page asks for no favicon.ico (the SVG namespace's ':' is %3A, which the
# data: URL decodes, so the page's text holds no 'http://').
FAVICON_URI = (
    "data:image/svg+xml,%3Csvg xmlns='http%3A//www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
    "%3Ccircle cx='8' cy='8' r='7' fill='%23ffb020' stroke='%231e1d1a' stroke-width='2'/%3E%3C/svg%3E"
)
SQUARE_ENOUGH = 1.2  # a fragment image closer to square than this takes its shape from the site's footprint


@dataclass(frozen=True)
class StoryPage:
    """The page's HTML and its layout stylesheet (assets/layout.css: where each fragment sits in its block)."""

    html: str
    layout_css: str


@dataclass(frozen=True)
class Fragment:
    """A detection on the page: its site, image files and texts."""

    site: PublicDetection
    image: FragmentImage
    text: SiteText


@dataclass(frozen=True)
class Pair:
    """A then-and-now pair on the page: the site's largest outline at NOW (the map flies to it), both images."""

    site: PublicDetection
    then_image: FragmentImage
    now_image: FragmentImage
    text: PairText
    place: str


@dataclass(frozen=True)
class ChangeSection:
    """The story's change over time: the headline figures, the methods note's rule and the pairs."""

    headline: str
    rule: str
    pairs: tuple[Pair, ...]


def footprint_aspect(f: Fragment) -> float:
    """Width / height of what the fragment shows: its image when cut out of square, else the site's footprint."""
    img = f.image.width_px / max(f.image.height_px, 1)
    if abs(math.log(img)) > math.log(SQUARE_ENOUGH):
        return img
    b = f.site.bbox
    width = (b.east_deg - b.west_deg) * math.cos(math.radians(f.site.centroid_lat))
    height = b.north_deg - b.south_deg
    return width / height if width > 0 and height > 0 else 1.0


def content_security_policy(basemap: Basemap | None) -> str:
    """The page's CSP: its own folder only, plus data: images and the basemap's tile origins when it has one."""
    extra = "".join(f" {o}" for o in tile_origins(basemap)) if basemap is not None else ""
    return f"{CSP_FIXED}; img-src 'self' data:{extra}"


def index_html(
    article: Article,
    fragments: list[Fragment],
    n_others: int,
    credits: Sequence[str],
    change: ChangeSection | None = None,
    locator: str = "",
) -> StoryPage:
    """The page's HTML and layout CSS; n_others is the number of sites on the map that are neither fragments nor
    pairs; ``change`` adds the then-and-now section after the header; ``locator`` is the inset map's SVG."""
    classes = size_classes_by_area([f.site.area_ha for f in fragments])
    aspects = [footprint_aspect(f) for f in fragments]
    blocks: list[int] = []  # blocks are rendered in page order; their count varies equal-sized blocks
    layout: list[str] = []  # CSS rules of the blocks' placements, in page order

    def block_html(indices: list[int]) -> str:
        blocks.append(len(blocks))
        chosen = [fragments[i] for i in indices]
        html_text, rules = _block_html(chosen, [classes[i] for i in indices], [aspects[i] for i in indices], blocks[-1])
        layout.append(rules)
        return html_text

    body = render_body(article.body_markdown, len(fragments), block_html, article.path)
    e = html.escape
    lead_html = f'<p class="lead">{e(article.lead)}</p>' if article.lead else ""
    bits = []
    if article.byline:
        bits.append(e(article.byline))
    if article.date:
        bits.append(f'<time datetime="{e(article.date)}">{e(format_date(article.date) or article.date)}</time>')
    byline_html = f'<p class="byline">{" · ".join(bits)}</p>' if bits else ""
    template = Template(resources.files("amberwatch.story").joinpath("assets", "template.html").read_text("utf-8"))
    page = template.substitute(
        lang=e(article.lang),
        csp=e(content_security_policy(article.basemap), quote=False),  # no quotes in it: keep it readable
        title=e(article.title),
        lead_attr=e(article.lead, quote=True),
        version=e(__version__),
        kicker="Satellite investigation",
        lead_html=lead_html,
        byline_html=byline_html,
        body=body,
        legend=legend_html(len({f.site.id for f in fragments} | _pair_ids(change)), n_others),
        footer=_footer(credits, change.rule if change is not None else ""),
        change=change_html(change) if change is not None else "",
        favicon=FAVICON_URI,
        map_link=map_link_html(article.map_url),
        locator=locator,
    )
    return StoryPage(page, "".join(layout))


def _footer(credits: Sequence[str], rule: str) -> str:
    e = html.escape
    imagery = f" Imagery: {e('; '.join(dict.fromkeys(credits)))}." if credits else ""
    return (
        "Each fragment is a site that a machine-learning model found on satellite imagery. The model can be wrong: "
        "a site is marked confirmed only after a reviewer checked it, the others are likely mining sites."
        f"{' ' + e(rule) if rule else ''}{imagery} Built with amberwatch."
    )


def map_link_html(map_url: str | None) -> str:
    """The link to the live map under the story map, when a map URL is configured."""
    if not map_url:
        return ""
    return (
        f'<p class="map-live"><a href="{html.escape(map_url, quote=True)}">Explore every site on the live map</a>'
        " (new detections and reviews appear there first)</p>"
    )


def _pair_ids(change: ChangeSection | None) -> set[int]:
    return {p.site.id for p in change.pairs} if change is not None else set()


def change_html(change: ChangeSection) -> str:
    """The then-and-now section: the headline figures and each pair, both halves in one button to the map."""
    pairs = "".join(_pair_figure(p) for p in change.pairs)
    return (
        '\n<section class="change" aria-labelledby="change-heading">'
        '<h2 id="change-heading">Then and now</h2>'
        f'<p class="change-headline">{html.escape(change.headline)}</p>{pairs}</section>'
    )


PAIR_SIZES = "(max-width: 640px) calc(100vw - 2rem), calc((min(100vw - 3rem, 66rem) - 4px) / 2)"


def _pair_half(img: FragmentImage, label: str, alt: str, when: str) -> str:
    e = html.escape
    default_src = next((path for w, path in img.files if w >= 640), img.files[-1][1])
    srcset = ", ".join(f"{path} {w}w" for w, path in img.files)
    height = max(1, round(img.height_px * img.files[-1][0] / img.width_px))
    return (
        f'<span class="pair-half pair-half--{when}">'
        f'<img src="{e(default_src)}" srcset="{e(srcset)}" sizes="{PAIR_SIZES}" width="{img.files[-1][0]}"'
        f' height="{height}" decoding="async" alt="{e(alt, quote=True)}">'
        f'<span class="pair-label">{e(label)}</span></span>'
    )


def _pair_figure(p: Pair) -> str:
    t, sid = p.text, p.site.id
    return (
        f'<figure class="pair" id="pair-{sid}" data-site="{sid}">'
        f'<button type="button" class="frag-btn pair-btn" aria-describedby="paircap-{sid}">'
        '<span class="pair-halves">'
        + _pair_half(p.then_image, t.then_label, t.then_alt, "then")
        + _pair_half(p.now_image, t.now_label, t.now_alt, "now")
        + '</span><span class="visually-hidden"> — show this site on the map</span></button>'
        f'<figcaption id="paircap-{sid}"><span class="cap-place">{html.escape(p.place)}</span> · '
        f'<span class="cap-ha">{html.escape(t.change)}</span></figcaption>'
        "</figure>"
    )


def legend_html(n_fragments: int, n_others: int) -> str:
    """The map legend: the story's fragments, and the other sites only when there are some."""
    text = f'<span class="legend-swatch legend-swatch--frag"></span> {plural(n_fragments, "fragment")} in this story'
    if n_others:
        others = plural(n_others, "other site")
        text += f' <span class="legend-swatch legend-swatch--site"></span> {others} the model found'
    return text


def site_centre_in_image(f: Fragment) -> tuple[float, float]:
    """Where the centre of the site's outline bounds lies in its image, as shares (0..1) of width and height from
    the top left; the middle for a thumbnail, whose footprint is unknown."""
    img = f.image.bbox
    if img is None:
        return 0.5, 0.5
    b = f.site.bbox
    west, north = mercantile.xy(img.west_deg, img.north_deg)
    east, south = mercantile.xy(img.east_deg, img.south_deg)
    x0, y0 = mercantile.xy(b.west_deg, b.south_deg)
    x1, y1 = mercantile.xy(b.east_deg, b.north_deg)
    return ((x0 + x1) / 2 - west) / (east - west), (north - (y0 + y1) / 2) / (north - south)


def crop_position(f: Fragment, p: Placement) -> tuple[float, float]:
    """The image's object-position (percentages) in a cell of p's shape, so the crop of 'object-fit: cover' is
    centred on the site's outline rather than the image's middle (clamped to the image)."""
    image_aspect = f.image.width_px / max(f.image.height_px, 1)
    cell_aspect = p.width_cells / p.height_cells
    cx, cy = site_centre_in_image(f)

    def along(c: float, image: float, box: float) -> float:
        # Image and box lengths along the cropped axis, in units of the matching side: the crop offset as a share.
        overflow = image - box
        return 50.0 if overflow <= 1e-9 else 100 * min(max((c * image - box / 2) / overflow, 0.0), 1.0)

    if cell_aspect >= image_aspect:  # the image fills the cell's width: its height is cropped
        return 50.0, along(cy, 1 / image_aspect, 1 / cell_aspect)
    return along(cx, image_aspect, cell_aspect), 50.0


def _placement_style(f: Fragment, a: Placement, b: Placement) -> str:
    """CSS variables of a fragment's grid lines and crop: --d* on desktop, --p* on phones (1-based lines)."""
    (dox, doy), (pox, poy) = crop_position(f, a), crop_position(f, b)
    return (
        f"--dx:{a.col + 1};--dy:{a.row + 1};--dw:{a.width_cells};--dh:{a.height_cells};"
        f"--px:{b.col + 1};--py:{b.row + 1};--pw:{b.width_cells};--ph:{b.height_cells};"
        f"--dox:{dox:.1f}%;--doy:{doy:.1f}%;--pox:{pox:.1f}%;--poy:{poy:.1f}%"
    )


def _sizes(dw: int, pw: int) -> str:
    return (
        f"(max-width: 640px) calc(100vw * {pw} / {PHONE.columns}), "
        f"calc(min(100vw - 3rem, 66rem) * {dw} / {DESKTOP.columns})"
    )


def _figure(f: Fragment, d: Placement, p: Placement) -> str:
    e = html.escape
    img, t = f.image, f.text
    default_src = next((path for w, path in img.files if w >= 640), img.files[-1][1])
    srcset = ", ".join(f"{path} {w}w" for w, path in img.files)
    height = max(1, round(img.height_px * img.files[-1][0] / img.width_px))
    return (
        f'<figure class="frag" id="frag-{f.site.id}" data-site="{f.site.id}">'
        f'<button type="button" class="frag-btn" aria-describedby="cap-{f.site.id}">'
        f'<img src="{e(default_src)}" srcset="{e(srcset)}" sizes="{_sizes(d.width_cells, p.width_cells)}"'
        f' width="{img.files[-1][0]}" height="{height}" loading="lazy" decoding="async"'
        f' alt="{e(t.alt, quote=True)}">'
        '<span class="visually-hidden"> — show this site on the map</span>'
        "</button>"
        f'<figcaption id="cap-{f.site.id}"><span class="cap-place">{e(t.place)}</span>'
        + (f'<span class="cap-date">{e(t.date_text)}</span>' if t.date_text else "")
        + f'<span class="cap-ha">{e(t.hectares)}</span>'
        + f'<span class="cap-status">{e(t.status)}</span></figcaption>'
        "</figure>"
    )


def _block_html(fragments: list[Fragment], classes: list[int], aspects: list[float], block_no: int) -> tuple[str, str]:
    """A block's HTML and the CSS rules placing its grid and fragments."""
    desktop = pack_block(classes, DESKTOP, aspects, block_no)
    phone = pack_block(classes, PHONE, aspects, block_no)
    check_packing(desktop)
    check_packing(phone)
    items = [_figure(f, desktop.placements[i], phone.placements[i]) for i, f in enumerate(fragments)]
    rules = [f'.frag-grid[data-block="{block_no}"]{{--drows:{desktop.rows};--prows:{phone.rows}}}\n']
    rules += [
        f"#frag-{f.site.id}{{{_placement_style(f, desktop.placements[i], phone.placements[i])}}}\n"
        for i, f in enumerate(fragments)
    ]
    label = f"Satellite fragments of {plural(len(fragments), 'site')}"
    block = (
        f'<section class="frag-block" aria-label="{html.escape(label)}">'
        f'<div class="frag-grid" data-block="{block_no}">' + "".join(items) + "</div></section>"
    )
    return block, "".join(rules)
