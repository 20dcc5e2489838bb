"""The guard middlewares' header handling, on raw ASGI scopes and messages."""

from __future__ import annotations

from amberwatch.web.guard import CorsMiddleware, reader_id

READER = "r" * 32


def scope_with(*headers: tuple[bytes, bytes], path: str = "/", method: str = "GET") -> dict:
    return {"type": "http", "method": method, "path": path, "headers": list(headers)}


def test_reader_id_reads_the_cookie_as_browsers_send_it():
    assert reader_id(scope_with((b"cookie", f"a=1; aw_reader={READER}; b=2".encode()))) == READER
    # Another cookie the strict RFC 2109 parser refuses must not hide the reader's own.
    assert reader_id(scope_with((b"cookie", f'x="unbalanced; aw_reader={READER}'.encode()))) == READER
    assert reader_id(scope_with((b"cookie", b"a=1"), (b"cookie", f"aw_reader={READER}".encode()))) == READER
    assert reader_id(scope_with((b"cookie", b"aw_reader=short"))) is None  # not an id we hand out
    assert reader_id(scope_with()) is None


def test_cors_adds_origin_to_vary_once_and_keeps_the_apps_headers():
    from starlette.testclient import TestClient

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 201, "headers": [(b"vary", b"Accept, origin")]})
        await send({"type": "http.response.body", "body": b"{}"})

    client = TestClient(CorsMiddleware(app, ["https://news.example.org"]))  # no lifespan: the app has none
    r = client.post("/api/detections/1/feedback", headers={"Origin": "https://news.example.org"})
    assert r.headers.get_list("vary") == ["Accept, origin"]
    assert r.headers["access-control-allow-origin"] == "https://news.example.org"
