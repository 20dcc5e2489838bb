"""Property-based fuzzing of every route of the app (issue 15, item 7): odd parameters never give a 500.

Each FastAPI route of ``create_app`` (enumerated from ``app.routes``) gets its path and query parameters (and its
JSON body's fields) filled with huge and negative integers, floats, lone surrogates, long and empty strings, or
plausible values, with and without a reviewer token. Every answer must be below 500, and every error the app's
JSON shape. A small ``max_examples`` per route keeps the whole run to a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from amberwatch.web.app import create_app
from tests.web.conftest import SOURCE_ID, api_routes, build_project

EXAMPLES_PER_ROUTE = 40

ODD_INTS = st.one_of(
    st.integers(min_value=2**63 - 2, max_value=2**80),
    st.integers(min_value=-(2**80), max_value=-1),
    st.integers(min_value=0, max_value=12),
)
ODD_TEXT = st.one_of(
    st.just(""),
    st.just("\ud800"),
    st.just("\udfff" * 3),
    st.text(max_size=20),
    st.text(alphabet="0123456789/.-e+", max_size=30),
    st.sampled_from([19, 20, 40, 400, 8000]).map(lambda n: "9" * n),  # long numbers and strings (URLs up to ~8 kB)
    st.sampled_from(["nan", "inf", "-inf", "1e309", "0x10", "١٢", "²", "../../etc/passwd", SOURCE_ID, "all"]),
    st.sampled_from(["d1", "e1", "u1/1", "c1/17/1/1/0/0", "t1/17/75329/43694", "like", "uncertain", "import"]),
)
ODD_FLOATS = st.floats(allow_nan=True, allow_infinity=True).map(repr)
URL_VALUES = st.one_of(ODD_INTS.map(str), ODD_TEXT, ODD_FLOATS)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), ODD_INTS, st.floats(allow_nan=True), ODD_TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(ODD_TEXT, inner, max_size=3)),
    max_leaves=6,
)


def encode(value: str) -> str:
    """A URL component of any string, lone surrogates included (as the bytes Python would write for them)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory):
    project = build_project(Path(tmp_path_factory.mktemp("fuzz")))
    app = create_app(project.db_path, project.cache_path, feedback_limit_per_hour=10_000)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield app, client, project


def params_of(dependant: object) -> tuple[list, list]:
    """(path params, query params) of a route's dependant and all its sub-dependencies."""
    path, query = list(dependant.path_params), list(dependant.query_params)  # type: ignore[attr-defined]
    for sub in dependant.dependencies:  # type: ignore[attr-defined]
        sub_path, sub_query = params_of(sub)
        path += sub_path
        query += sub_query
    return path, query


@st.composite
def requests_for(draw: st.DrawFn, path: str, route: object) -> tuple[str, bytes | None]:
    """(URL, JSON body or None) for one route, its parameters drawn from the odd values."""
    path_params, query_params = params_of(route.dependant)  # type: ignore[attr-defined]
    url = path
    for p in path_params:
        url = url.replace("{" + p.alias + "}", encode(draw(URL_VALUES)))
    query = [
        f"{encode(p.alias)}={encode(value)}" for p in query_params for value in draw(st.lists(URL_VALUES, max_size=2))
    ]
    if query:
        url += "?" + "&".join(query)
    body = None
    if route.body_field is not None:  # type: ignore[attr-defined]
        fields = list(route.body_field.field_info.annotation.model_fields)  # type: ignore[attr-defined]
        obj = draw(st.fixed_dictionaries({}, optional={f: JSON_VALUES for f in fields}))
        body = json.dumps(draw(st.one_of(st.just(obj), JSON_VALUES))).encode("ascii")  # \ud800 as an escape
    return url, body


def route_fuzzer(client: TestClient, token: str, method: str, path: str, route: object, seen: dict[int, int]):
    """A Hypothesis test of one route: drawn requests, answered below 500, errors as the app's JSON.

    ``seen`` counts the answers by status.
    """

    @settings(
        max_examples=EXAMPLES_PER_ROUTE,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(req=requests_for(path, route), reviewer=st.booleans())
    def check(req: tuple[str, bytes | None], reviewer: bool) -> None:
        url, body = req
        headers = {"Authorization": f"Bearer {token}"} if reviewer else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        note(f"{method} {url[:500]} body={(body or b'')[:500]!r}")
        r = client.request(method, url, content=body, headers=headers)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code < 500, f"{method} {url[:300]} -> {r.status_code} {r.text[:300]}"
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith("application/json"), (url, r.headers)
            assert r.json()["status"] == r.status_code

    return check


def test_no_route_answers_500_to_odd_parameters(fuzz_app):
    app, client, project = fuzz_app
    routes = api_routes(app)
    assert len(routes) >= 18, [p for p, _, _ in routes]
    answered: dict[str, dict[int, int]] = {}
    for path, methods, route in routes:
        method = "POST" if "POST" in methods else "GET"
        codes = answered.setdefault(f"{method} {path}", {})
        route_fuzzer(client, project.reviewer_token, method, path, route, codes)()
    print("\n" + "\n".join(f"{route}: {dict(sorted(codes.items()))}" for route, codes in answered.items()))
    # The odd values reach the handlers too, not only the validation in front of them.
    assert sum(1 for codes in answered.values() if any(200 <= c < 300 for c in codes)) >= 8
