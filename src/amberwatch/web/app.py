"""The amberwatch web app: map of detections, readers' corrections, reviewer queue and labelling page.

Everything it serves comes from the project DB, the tile cache and installed packages (Leaflet via
xstatic): it works offline and loads nothing from a CDN.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import xstatic.pkg.leaflet as xs_leaflet
import xstatic.pkg.leaflet_markercluster as xs_markercluster
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from amberwatch import __version__
from amberwatch.db import connect
from amberwatch.errors import AmberwatchError
from amberwatch.imagery.cache import TileCache, default_cache_path
from amberwatch.web.feedback import DEFAULT_LIMIT_PER_HOUR
from amberwatch.web.guard import MAX_BODY_BYTES, GuardMiddleware
from amberwatch.web.routes import detections, feedback, label, pages, similar
from amberwatch.web.schema import ensure_schema
from amberwatch.web.similar import VectorCache

STATIC_DIR = Path(__file__).resolve().parent / "static"


def error_response(message: str, status: int) -> JSONResponse:
    """The app's one JSON error shape."""
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
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """Build the app over an existing project DB (migrated if needed) and its tile cache (default: beside the DB)."""
    conn = connect(db_path, create=False)
    try:
        ensure_schema(conn)
    finally:
        conn.close()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
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
    app.state.db_path = Path(db_path)
    app.state.cache = TileCache(cache_path if cache_path is not None else default_cache_path(db_path))
    app.state.feedback_limit_per_hour = feedback_limit_per_hour
    app.state.vectors = VectorCache()

    @app.exception_handler(AmberwatchError)
    async def amberwatch_error(request: Request, exc: AmberwatchError) -> JSONResponse:
        return error_response(str(exc), exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_message(exc), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(str(exc.detail), exc.status_code)

    for module in (detections, feedback, label, pages, similar):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/vendor/leaflet", StaticFiles(directory=xs_leaflet.BASE_DIR), name="leaflet")
    app.mount("/vendor/markercluster", StaticFiles(directory=xs_markercluster.BASE_DIR), name="markercluster")
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    app.add_middleware(GuardMiddleware, max_body_bytes=max_body_bytes)
    return app
