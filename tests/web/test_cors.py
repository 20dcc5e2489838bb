"""``serve --cors-origin``: a static edition on another origin sends flags to ``serve`` (in-process, TestClient).

Only the listed origins get CORS headers, and only on the endpoints the static viewer calls (flags, a reader's own
answer, missed-site reports) and their preflights; without the option nothing changes. Over HTTPS the reader cookie
is then SameSite=None; Secure, which browsers send cross-site.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from amberwatch.cli import main
from amberwatch.errors import InvalidInputError
from amberwatch.web.app import create_app
from amberwatch.web.guard import cors_origin
from tests.web.conftest import Project

SITE = "http://127.0.0.1:8081"  # the static edition's origin
OTHER = "https://evil.example"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
FLAG = {"verdict": "confirmed", "category": None, "comment": "pits by the road"}


def cors_headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


@pytest.fixture
def cors_client(project: Project) -> Iterator[TestClient]:
    """The app serving flags to the edition at SITE (listed with a trailing slash and a capital, as people type)."""
    app = create_app(project.db_path, project.cache_path, cors_origins=["HTTP://127.0.0.1:8081/"])
    with TestClient(app) as client:
        yield client


def test_preflight_and_flag_from_the_listed_origin(cors_client: TestClient, project: Project) -> None:
    """The preflight is answered for exactly that origin with credentials; the flag lands, with the reader's cookie,
    which then finds the reader's own answer."""
    path = f"/api/detections/{project.detection_ids[0]}/feedback"
    r = cors_client.options(path, headers={"Origin": SITE, **PREFLIGHT})
    assert r.status_code == 204 and r.headers["vary"] == "Origin"
    assert cors_headers(r) == {
        "access-control-allow-origin": SITE,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, POST",
        "access-control-allow-headers": "Content-Type",
        "access-control-max-age": "600",
    }
    r = cors_client.post(path, json=FLAG, headers={"Origin": SITE})
    assert r.status_code == 201 and r.json()["verdict"] == "confirmed"
    assert cors_headers(r) == {"access-control-allow-origin": SITE, "access-control-allow-credentials": "true"}
    assert "Origin" in r.headers["vary"] and "SameSite=Lax" in r.headers["set-cookie"]  # http: same-site only
    mine = cors_client.get(path + "/mine", headers={"Origin": SITE})
    assert mine.json()["feedback"]["comment"] == "pits by the road"
    assert mine.headers["access-control-allow-origin"] == SITE


def test_reports_and_the_guards_refusals_carry_the_headers(cors_client: TestClient, project: Project) -> None:
    """A missed-site report's preflight is answered too; a refused body (415) still tells the page why."""
    r = cors_client.options(f"/api/scans/{project.scan_id}/reports", headers={"Origin": SITE, **PREFLIGHT})
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == SITE
    r = cors_client.post(
        f"/api/detections/{project.detection_ids[0]}/feedback",
        content="verdict=confirmed",
        headers={"Origin": SITE, "Content-Type": "text/plain"},
    )
    assert r.status_code == 415 and r.headers["access-control-allow-origin"] == SITE


def test_other_origins_and_other_endpoints_get_no_cors(cors_client: TestClient, project: Project) -> None:
    path = f"/api/detections/{project.detection_ids[0]}/feedback"
    r = cors_client.options(path, headers={"Origin": OTHER, **PREFLIGHT})
    assert r.status_code == 403 and not cors_headers(r) and OTHER in r.json()["error"]
    r = cors_client.post(path, json=FLAG, headers={"Origin": OTHER})
    assert not cors_headers(r)
    for other_path in ("/api/scans", "/api/feedback/summary", f"/api/detections/{project.detection_ids[0]}"):
        r = cors_client.get(other_path, headers={"Origin": SITE})
        assert not cors_headers(r), other_path
    r = cors_client.options("/api/scans", headers={"Origin": SITE, **PREFLIGHT})
    assert not cors_headers(r)


def test_without_the_option_nothing_changes(client: TestClient, project: Project) -> None:
    path = f"/api/detections/{project.detection_ids[0]}/feedback"
    r = client.options(path, headers={"Origin": SITE, **PREFLIGHT})
    assert r.status_code == 405 and not cors_headers(r)
    r = client.post(path, json=FLAG, headers={"Origin": SITE})
    assert r.status_code == 201 and not cors_headers(r) and "vary" not in r.headers


def test_over_https_the_reader_cookie_goes_cross_site(project: Project) -> None:
    """SameSite=None; Secure with --cors-origin over HTTPS (a CDN on another site); Lax without the option."""
    path = f"/api/detections/{project.detection_ids[0]}/feedback/mine"
    crossing = create_app(project.db_path, project.cache_path, cors_origins=["https://news.example.org"])
    with TestClient(crossing, base_url="https://testserver") as c:
        cookie = c.get(path, headers={"Origin": "https://news.example.org"}).headers["set-cookie"]
    assert "SameSite=None" in cookie and "Secure" in cookie and "HttpOnly" in cookie
    with TestClient(create_app(project.db_path, project.cache_path), base_url="https://testserver") as c:
        cookie = c.get(path).headers["set-cookie"]
    assert "SameSite=Lax" in cookie and "Secure" in cookie


@pytest.mark.parametrize("value", ["127.0.0.1:8081", "ftp://x.org", "https://news.example.org/map", "https://"])
def test_an_origin_is_scheme_host_and_port(value: str, project: Project, tmp_path) -> None:
    with pytest.raises(InvalidInputError, match="is not an origin"):
        cors_origin(value)
    result = CliRunner().invoke(main, ["serve", "--db", str(project.db_path), "--cors-origin", value])
    assert result.exit_code == 2 and repr(value) in result.output


def test_origins_are_written_as_browsers_send_them() -> None:
    assert cors_origin("https://News.Example.org:443/") == "https://news.example.org"
    assert cors_origin("http://127.0.0.1:8081") == "http://127.0.0.1:8081"
