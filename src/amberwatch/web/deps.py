"""FastAPI dependencies of the route modules: a DB connection per request, tile and vector caches, the reviewer."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from fastapi import Depends, Request

from amberwatch.imagery.cache import TileCache
from amberwatch.review.feedback import client_hash
from amberwatch.web.schema import client_salt
from amberwatch.web.similar import VectorCache
from amberwatch.web.users import User, require_reviewer

# A web write waits this long for another process's write lock, then answers 503 (DatabaseBusyError) at once
# rather than holding a server thread for the DB's usual 30 s. WAL readers never wait for it.
WEB_BUSY_TIMEOUT_S = 3.0


def get_conn(request: Request) -> Iterator[sqlite3.Connection]:
    """An open project DB connection for the duration of one request; a lock held too long is a DatabaseBusyError
    (503), a full disk a StorageFullError (507)."""
    # No path in its errors (a full disk is a StorageFullError, 507): the answer is public.
    conn = request.app.state.project.connection(busy_timeout_s=WEB_BUSY_TIMEOUT_S, name="the project database")
    try:
        yield conn
    finally:
        conn.close()


def get_cache(request: Request) -> TileCache:
    """The app's shared (thread-safe) tile cache."""
    return request.app.state.cache


def get_vectors(request: Request) -> VectorCache:
    """The app's cache of scans' tile embeddings and search indexes."""
    return request.app.state.vectors


def get_reviewer(request: Request, conn: sqlite3.Connection = Depends(get_conn)) -> User:
    """The reviewer named by the bearer token (401 without a valid token, 403 for a non-reviewer)."""
    return require_reviewer(conn, request.headers.get("authorization"))


def get_client(request: Request, conn: sqlite3.Connection = Depends(get_conn)) -> str:
    """Salted hash of the client's address; the raw IP is never stored.

    Behind a proxy that ``serve --trusted-proxy`` names, uvicorn has already put the X-Forwarded-For
    address in ``request.client``. The User-Agent is not part of it: a client can send a new one every time.
    """
    ip = request.client.host if request.client else None
    return client_hash(client_salt(conn), ip)


def get_reader(request: Request, conn: sqlite3.Connection = Depends(get_conn)) -> str:
    """Salted hash of the reader's id (the ``aw_reader`` cookie, ``guard.ReaderCookieMiddleware``): one person."""
    return client_hash(client_salt(conn), "reader\n" + request.state.reader)
