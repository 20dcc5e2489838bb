"""The amberwatch web app: map of detections, readers' corrections, reviewer queue and labelling page.

Everything it serves comes from the project DB, the tile cache and installed packages (Leaflet via
xstatic): it works offline and loads nothing from a CDN.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import xstatic.pkg.leaflet as xs_leaflet
import xstatic.pkg.leaflet_markercluster as xs_markercluster
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from amberwatch import __version__
from amberwatch.errors import AmberwatchError
from amberwatch.imagery.cache import TileCache
from amberwatch.project import Project
from amberwatch.review.feedback import DEFAULT_LIMIT_PER_HOUR, FeedbackLimits
from amberwatch.review.schema import SCHEMA as WEB_SCHEMA
from amberwatch.web.guard import (
    MAX_BODY_BYTES,
    SECURITY_HEADERS,
    WRITE_SLOTS,
    CorsMiddleware,
    GuardMiddleware,
    ReaderCookieMiddleware,
    WriteSlotsMiddleware,
    cors_origin,
)
from amberwatch.web.routes import detections, feedback, label, pages, reports, similar, timeline
from amberwatch.web.similar import VectorCache
from amberwatch.web.warmup import Warmup

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_ERROR_CHARS = 2000


def error_response(message: str, status: int) -> JSONResponse:
    """The app's one JSON error shape (the message cut to a sane length, any invalid character escaped)."""
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + "…"
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": message, "status": status}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def create_app(
    db_path: str | os.PathLike[str],
    cache_path: str | os.PathLike[str] | None = None,
    *,
    feedback_limit_per_hour: int = DEFAULT_LIMIT_PER_HOUR,
    feedback_limits: FeedbackLimits | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    basemap: dict | None = None,
    build_overviews: bool = False,
    write_slots: int = WRITE_SLOTS,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    """Build the app over an existing project DB (migrated if needed) and its tile cache (default: beside the DB).

    ``feedback_limits`` sets every cap on readers' corrections; ``feedback_limit_per_hour`` only the per-client one.
    ``basemap``: an online basemap under the imagery (``web.layers.basemap_config``; default none: fully offline).
    ``build_overviews``: build every scan's overview tiles in the background at start (else on first request).
    ``write_slots``: state-changing requests served at once; more answer 503 at once (reads never wait on writes).
    ``cors_origins``: sites of static editions whose viewers send flags and reports here (``web.guard.CorsMiddleware``;
    default none: no CORS).
    """
    cors = [cors_origin(o) for o in cors_origins]  # a bad origin fails before the project is opened
    project = Project.open(db_path, create=False)
    project.migrate(WEB_SCHEMA)  # once, at start: requests get their own connections (project.connection)
    project.close()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.warmup = Warmup(project, app.state.cache, overviews=build_overviews)
        yield
        app.state.warmup.close()
        app.state.cache.close()

    app = FastAPI(
        title="amberwatch",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        description="Detections of surface mining, readers' corrections and reviewers' decisions.",
    )
    app.state.project = project
    app.state.cache = TileCache(cache_path if cache_path is not None else project.tile_cache_path())
    app.state.feedback_limits = feedback_limits or FeedbackLimits(per_client_hour=feedback_limit_per_hour)
    app.state.vectors = VectorCache()
    app.state.basemap = basemap
    _add_error_handlers(app)
    for module in (detections, feedback, label, pages, reports, similar, timeline):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/vendor/leaflet", StaticFiles(directory=xs_leaflet.BASE_DIR), name="leaflet")
    app.mount("/vendor/markercluster", StaticFiles(directory=xs_markercluster.BASE_DIR), name="markercluster")
    if basemap:
        _allow_basemap_images(app, basemap["origin"])
    _add_middleware(app, max_body_bytes, write_slots, cors)
    return app


def _add_middleware(app: FastAPI, max_body_bytes: int, write_slots: int, cors_origins: list[str]) -> None:
    """The request pipeline, outermost last: CORS (only with origins; so the guard's refusals carry its headers too),
    the reader cookie, the guard, the write slots, gzip."""
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    app.add_middleware(WriteSlotsMiddleware, slots=write_slots)
    app.add_middleware(GuardMiddleware, max_body_bytes=max_body_bytes)
    app.add_middleware(ReaderCookieMiddleware, cross_site=bool(cors_origins))
    if cors_origins:
        app.add_middleware(CorsMiddleware, origins=cors_origins)


def _allow_basemap_images(app: FastAPI, origin: str) -> None:
    """The guard's CSP with the basemap's origin added to img-src (the guard keeps a CSP a response already has)."""
    base = dict(SECURITY_HEADERS)[b"content-security-policy"].decode("ascii")
    csp = base.replace("img-src 'self' data: blob:", f"img-src 'self' data: blob: {origin}")

    @app.middleware("http")
    async def basemap_csp(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers["content-security-policy"] = csp
        return response


def _add_error_handlers(app: FastAPI) -> None:
    """Every error leaves the app as ``{"error", "status"}`` JSON: typed errors, invalid requests, and crashes."""

    @app.exception_handler(AmberwatchError)
    async def amberwatch_error(request: Request, exc: AmberwatchError) -> JSONResponse:
        response = error_response(str(exc), exc.http_status)
        if exc.retry_after_s is not None:
            response.headers["retry-after"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_message(exc), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(str(exc.detail), exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the client's fault: Starlette re-raises it after this answer, so the server logs the
        # traceback; the client gets no detail.
        return error_response("internal error: the server could not answer this request", 500)
