"""Request guard (body size, JSON-only state changes) and security headers, as one small ASGI middleware.

Requests that change state must carry a JSON body (``Content-Type: application/json``) or none at
all: HTML forms cannot send that cross-site without CORS (CSRF-safe). CORS is off unless ``serve --cors-origin``
names a static edition's site (``CorsMiddleware``), and then only for the readers' flag and report endpoints.
They also take one of a few write slots (``WriteSlotsMiddleware``; a burst waits briefly for one on the event
loop): writers waiting on a locked DB can never use up the server threads that serve reads.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amberwatch.errors import DatabaseBusyError, InvalidInputError

MAX_BODY_BYTES = 16 * 1024
WRITE_SLOTS = 8  # well under the server's 40 worker threads
WRITE_QUEUE_S = 2.0  # a write waits this long for a slot: a burst of flags (a front page) queues rather than fails
RETRY_AFTER = (b"retry-after", str(DatabaseBusyError.retry_after_s).encode())
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self';"
        b" object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


READER_COOKIE = "aw_reader"
READER_MAX_AGE_S = 400 * 24 * 3600  # browsers cap cookie lifetimes near 400 days
_READER_ID = re.compile(r"[A-Za-z0-9_-]{20,64}")
# Cacheable files never set the cookie: a shared cache must not hand one reader's id to another.
_NO_COOKIE_PREFIXES = ("/static/", "/vendor/", "/tiles/")


def error_body(message: str, status: int) -> bytes:
    """The app's one JSON error shape: {"error": message, "status": status}."""
    return json.dumps({"error": message, "status": status}).encode("utf-8")


class GuardMiddleware:
    """Adds security headers; refuses oversized bodies (413) and non-JSON bodies on unsafe methods (415)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        """Wrap an ASGI app."""
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_security_headers(_response_headers(message))
            await send(message)

        if scope["method"] not in UNSAFE_METHODS:
            await self.app(scope, receive, send_with_headers)
            return
        headers = Headers(scope=scope)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        declared = headers.get("content-length")
        if declared is not None:
            try:
                declared_len = int(declared)
            except ValueError:
                await self._refuse(send_with_headers, 400, f"invalid Content-Length {declared!r}")
                return
            if declared_len > self.max_body_bytes:
                await self._refuse(
                    send_with_headers, 413, f"request body of {declared_len} bytes exceeds {self.max_body_bytes} bytes"
                )
                return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await self._refuse(send_with_headers, 413, f"request body exceeds {self.max_body_bytes} bytes")
                return
        if content_type in FORM_CONTENT_TYPES or (body and content_type != "application/json"):
            await self._refuse(
                send_with_headers,
                415,
                f"Content-Type {content_type or 'none'!r} is not accepted:"
                " send JSON with 'Content-Type: application/json'",
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_with_headers)

    @staticmethod
    async def _refuse(send: Send, status: int, message: str) -> None:
        payload = error_body(message, status)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})


class WriteSlotsMiddleware:
    """At most ``slots`` state-changing requests at once; one more waits for a slot up to ``queue_s`` (on the event
    loop: no server thread is held), then is answered 503 with Retry-After."""

    def __init__(self, app: ASGIApp, slots: int = WRITE_SLOTS, queue_s: float = WRITE_QUEUE_S) -> None:
        """Wrap an ASGI app."""
        self.app = app
        self.slots = slots
        self.queue_s = queue_s
        self._free: asyncio.Semaphore | None = None  # made on the event loop, on first use

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI request."""
        if scope["type"] != "http" or scope["method"] not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        if self._free is None:
            self._free = asyncio.Semaphore(self.slots)
        try:
            await asyncio.wait_for(self._free.acquire(), timeout=self.queue_s)
        except TimeoutError:
            payload = error_body(f"the server is busy with {self.slots} writes: try again shortly", 503)
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
            await send({"type": "http.response.start", "status": 503, "headers": [*headers, RETRY_AFTER]})
            await send({"type": "http.response.body", "body": payload})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._free.release()


# The endpoints a static edition's viewer calls on ``serve`` (flags, a reader's own answer, missed-site reports).
CORS_PATHS = re.compile(r"/api/(detections/[0-9]+/feedback(/mine)?|scans/[0-9]+/reports)")
CORS_MAX_AGE_S = 600
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def cors_origin(value: str) -> str:
    """An origin as browsers send it (``https://news.example.org``, ``http://127.0.0.1:8080``), or an error naming
    the value: scheme http(s), a host, an optional port, nothing after it."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise InvalidInputError(f"CORS origin {value!r} is not an origin such as https://news.example.org")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidInputError(f"CORS origin {value!r} is not an origin such as https://news.example.org")
    netloc = parts.netloc.lower().removesuffix(_DEFAULT_PORTS[parts.scheme])
    return f"{parts.scheme}://{netloc}"


def _add_security_headers(headers: MutableHeaders) -> None:
    """Add each of ``SECURITY_HEADERS`` the response does not set itself."""
    for name, value in SECURITY_HEADERS:
        if name.decode("latin-1") not in headers:
            headers.append(name.decode("latin-1"), value.decode("latin-1"))


def _response_headers(message: Message) -> MutableHeaders:
    """The headers of an ``http.response.start`` message, editable in place (ASGI lets a message omit them)."""
    message.setdefault("headers", [])
    return MutableHeaders(scope=message)


class CorsMiddleware:
    """Lets the listed origins (static editions' sites) call the flag and report endpoints (``CORS_PATHS``) with the
    reader cookie: Access-Control-Allow-Origin for exactly those origins, Allow-Credentials, Vary: Origin; their
    preflights answered here. Other origins get no CORS headers (a preflight of theirs: 403); other paths, nothing."""

    def __init__(self, app: ASGIApp, origins: Iterable[str]) -> None:
        """Wrap an ASGI app; ``origins`` as ``cors_origin`` checks them."""
        self.app = app
        self.origins = frozenset(cors_origin(o) for o in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI request."""
        if scope["type"] != "http" or not CORS_PATHS.fullmatch(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        origin = request_headers.get("origin")
        allowed = origin is not None and origin in self.origins
        cors = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-credentials", b"true"),
        ]
        added = cors if allowed else []
        if scope["method"] == "OPTIONS" and request_headers.get("access-control-request-method"):
            await self._preflight(send, origin, added)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = _response_headers(message)
                for name, value in added:
                    headers.append(name.decode("latin-1"), value.decode("latin-1"))
                _vary_origin(headers)
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    async def _preflight(send: Send, origin: str | None, cors: list[tuple[bytes, bytes]]) -> None:
        if cors:
            status, payload = 204, b""
            cors = [
                *cors,
                (b"access-control-allow-methods", b"GET, POST"),
                (b"access-control-allow-headers", b"Content-Type"),
                (b"access-control-max-age", str(CORS_MAX_AGE_S).encode()),
            ]
        else:
            status = 403
            payload = error_body(f"origin {origin!r} may not call this endpoint (serve --cors-origin)", 403)
            cors = [(b"content-type", b"application/json")]
        headers = [*cors, (b"content-length", str(len(payload)).encode()), (b"vary", b"Origin")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _vary_origin(headers: MutableHeaders) -> None:
    """Add Origin to Vary once (a shared cache must not hand one origin's answer to another)."""
    varies = {v.strip().lower() for value in headers.getlist("vary") for v in value.split(",")}
    if "origin" not in varies:
        headers.add_vary_header("Origin")


def reader_id(scope: Scope) -> str | None:
    """The reader id the ``aw_reader`` cookie of a request carries, if it is well formed."""
    for header in Headers(scope=scope).getlist("cookie"):
        value = cookie_parser(header).get(READER_COOKIE)
        if value is not None and _READER_ID.fullmatch(value):
            return value
    return None


class ReaderCookieMiddleware:
    """Tells readers apart by a random id in an HttpOnly, SameSite=Lax cookie (no login), set on their first visit.

    The id is in ``request.state.reader`` for every request; a request without one gets a new one, sent back as a
    cookie (never on cacheable static files and tiles). ``cross_site``: static editions on other sites send flags
    here (``serve --cors-origin``), so over HTTPS the cookie is SameSite=None; Secure, which browsers send on
    cross-site requests (Lax ones they hold back); over plain HTTP it stays Lax (None needs Secure), which serves
    same-site origins (another port or subdomain).
    """

    def __init__(self, app: ASGIApp, cross_site: bool = False) -> None:
        """Wrap an ASGI app."""
        self.app = app
        self.cross_site = cross_site

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        known = reader_id(scope)
        scope.setdefault("state", {})["reader"] = known or secrets.token_urlsafe(24)
        if known or scope.get("path", "").startswith(_NO_COOKIE_PREFIXES):
            await self.app(scope, receive, send)
            return
        secure = scope.get("scheme") == "https"
        cookie = _reader_cookie(scope["state"]["reader"], secure=secure, cross_site=self.cross_site and secure)

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                _response_headers(message).append("set-cookie", cookie.decode("latin-1"))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _reader_cookie(value: str, *, secure: bool, cross_site: bool = False) -> bytes:
    same_site = "None" if cross_site else "Lax"
    flags = f"; Max-Age={READER_MAX_AGE_S}; Path=/; HttpOnly; SameSite={same_site}" + ("; Secure" if secure else "")
    return f"{READER_COOKIE}={value}{flags}".encode("latin-1")
