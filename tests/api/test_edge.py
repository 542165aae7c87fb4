"""The edge of a real server: health checks, authentication (401, 429), problem details,
security headers, the body limit, pagination and the read routes' shapes."""

from __future__ import annotations

import json

import pytest
from _apisupport import ADMIN, Live

pytestmark = pytest.mark.integration

PROBLEM_KEYS = {"type", "title", "status", "detail", "exit_code", "diagnostics", "hint"}


def assert_problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert set(body) >= PROBLEM_KEYS, body
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body


def test_health_and_readiness_need_no_token(quiet_live: Live) -> None:
    with quiet_live.client(None) as c:
        assert c.get("/healthz").json() == {"status": "ok", "checks": {}}
        ready = c.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ok", "checks": {"store": "ok", "queue": "ok"}}


@pytest.mark.parametrize(
    "header",
    [None, "Bearer sy_000000000000_nottherealsecret", "Basic YWRtaW46YWRtaW4=", "Bearer"],
    ids=["no-header", "unknown-token", "basic-auth", "empty-bearer"],
)
def test_every_api_route_needs_a_valid_token(quiet_live: Live, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    with quiet_live.client(None, **headers) as c:
        for path in ("/api/v1/environments", f"/api/v1/environments/{quiet_live.env}/status"):
            body = assert_problem(c.get(path), 401)
            assert body["title"] == "Not authenticated"
            assert body["exit_code"] == 6
        assert c.get("/api/v1/whoami").headers["www-authenticate"].startswith("Bearer")


def test_whoami_and_problem_details_of_a_missing_environment(quiet_live: Live) -> None:
    with quiet_live.client(ADMIN) as c:
        assert c.get("/api/v1/whoami").json() == {"user": ADMIN, "teams": [], "via": "token"}
        body = assert_problem(c.get("/api/v1/environments/nope"), 404)
        assert body["detail"] == "No environment 'nope'"
        assert body["exit_code"] == 2
        assert body["hint"]
        unknown = assert_problem(c.get("/api/v1/no-such-route"), 404)
        assert unknown["title"] == "Not found"


def test_a_user_without_a_role_gets_403_with_the_cli_message(quiet_live: Live) -> None:
    with quiet_live.client("nobody") as c:
        body = assert_problem(c.get(f"/api/v1/environments/{quiet_live.env}"), 403)
        assert body["detail"] == f"nobody may not view in environment '{quiet_live.env}'"
        assert body["exit_code"] == 6
        # a list across environments: the service layer refuses the org-wide view too
        assert_problem(c.get("/api/v1/environments"), 403)


def test_security_headers_on_every_response(quiet_live: Live) -> None:
    with quiet_live.client(ADMIN) as c, quiet_live.client(None) as anon:
        for response in (
            c.get("/healthz"),
            c.get("/api/v1/environments"),
            c.get("/api/v1/environments/nope"),
            anon.get("/api/v1/environments"),
        ):
            h = response.headers
            assert h["x-content-type-options"] == "nosniff"
            assert h["x-frame-options"] == "DENY"
            assert h["referrer-policy"] == "no-referrer"
            assert h["content-security-policy"].startswith("default-src 'none'")
            assert h["cache-control"] == "no-store"
            assert "access-control-allow-origin" not in h
        # no CORS by default: a preflight gets nothing that allows a browser in
        pre = c.options(
            "/api/v1/environments",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in pre.headers


def test_a_body_over_the_limit_is_refused_with_413(quiet_live: Live) -> None:
    big = {"scores": {"score.yaml": "x" * (1024 * 1024 + 10)}}
    with quiet_live.client(ADMIN) as c:
        body = assert_problem(
            c.post(f"/api/v1/environments/{quiet_live.env}/deploy", json=big), 413
        )
        assert "larger than 1048576 bytes" in body["detail"]

        # a streamed body (no Content-Length) is cut at the limit too
        def chunks():  # type: ignore[no-untyped-def]
            yield b'{"scores": {"score.yaml": "'
            for _ in range(300):
                yield b"y" * 4096
            yield b'"}}'

        streamed = c.post(
            f"/api/v1/environments/{quiet_live.env}/deploy",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
        assert_problem(streamed, 413)


def test_invalid_input_is_a_problem_with_diagnostics(quiet_live: Live) -> None:
    with quiet_live.client(ADMIN) as c:
        bad_schema = c.post(f"/api/v1/environments/{quiet_live.env}/deploy", json={"nope": 1})
        body = assert_problem(bad_schema, 422)
        assert body["diagnostics"]
        bad_score = c.post(
            f"/api/v1/environments/{quiet_live.env}/deploy",
            json={"scores": {"score.yaml": "apiVersion: score.dev/v1b1\n"}, "plan_only": True},
        )
        body = assert_problem(bad_score, 422)
        assert body["exit_code"] == 2
        assert body["diagnostics"], body
        assert all("summary" in d for d in body["diagnostics"])


def test_lists_paginate_with_next_links(quiet_live: Live) -> None:
    with quiet_live.client(ADMIN) as c:
        seen = []
        url: str | None = "/api/v1/audit?limit=2"
        pages = 0
        while url:
            page = c.get(url)
            assert page.status_code == 200, page.text
            data = page.json()
            assert len(data["items"]) <= 2
            seen.extend(item["seq"] for item in data["items"])
            url = data["next"]
            pages += 1
        everything = c.get("/api/v1/audit?limit=500").json()
        assert everything["next"] is None
        assert seen == [e["seq"] for e in everything["items"]]
        assert pages >= 2
        assert_problem(c.get("/api/v1/audit?cursor=abc"), 400)
        assert c.get("/api/v1/audit?limit=0").status_code == 422


def test_reads_have_the_cli_json_shapes(quiet_live: Live) -> None:
    env = quiet_live.env
    with quiet_live.client(ADMIN) as c:
        envs = c.get("/api/v1/environments").json()["items"]
        assert [e["name"] for e in envs] == [env]
        shown = c.get(f"/api/v1/environments/{env}").json()
        assert shown["status"] == "ready" and shown["type"] == "lite"
        assert {"children", "workloads", "resources"} <= set(shown)
        status = c.get(f"/api/v1/environments/{env}/status").json()
        assert status["environment"]["name"] == env
        deps = c.get(f"/api/v1/environments/{env}/deployments").json()["items"]
        assert deps and deps[0]["kind"] == "create"
        one = c.get(f"/api/v1/environments/{env}/deployments/{deps[0]['id']}").json()
        assert one["id"] == deps[0]["id"] and "events" in one
        assert c.get("/api/v1/access/roles").json()["view"]["scoped"] is True
        grants = c.get("/api/v1/access/grants").json()
        assert grants["you"]["actor"] == ADMIN
        assert c.get("/api/v1/cost").json()["currency"]
        assert "revision" in c.get("/api/v1/policies").json()
        assert c.get("/api/v1/audit/verify").json()["ok"] is True
        kinds = {d["kind"] for d in c.get("/api/v1/platform").json()["items"]}
        assert {"EnvironmentType", "Environment"} <= kinds
        comps = c.get("/api/v1/components").json()["items"]
        assert any(x["name"] == "local-volume" for x in comps)
        assert c.get("/api/v1/components/local-volume").json()["name"] == "local-volume"


def test_the_openapi_document_and_docs(quiet_live: Live) -> None:
    with quiet_live.client(None) as c:
        spec = c.get("/openapi.json").json()
        assert spec["openapi"].startswith("3.1")
        assert "/api/v1/jobs/{job_id}/events" in spec["paths"]
        assert "bearer" in json.dumps(spec["components"]["securitySchemes"]).lower()
        assert c.get("/docs").status_code == 200


def test_failed_authentications_are_rate_limited_per_client(
    volume_template,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    from _apisupport import prepare, serving, teardown

    from stackyard.api.context import ApiConfig

    settings = prepare(tmp_path / "home", volume_template, "ratelimited")
    try:
        with serving(settings, worker=False, config=ApiConfig(auth_failures=3)) as (url, logs):
            import httpx

            bad = {"Authorization": "Bearer sy_000000000000_wrong"}
            with httpx.Client(base_url=url, headers=bad) as c:
                statuses = [c.get("/api/v1/environments").status_code for _ in range(5)]
                assert statuses[:3] == [401, 401, 401]
                limited = c.get("/api/v1/environments")
                body = assert_problem(limited, 429)
                assert int(limited.headers["retry-after"]) >= 1
                assert body["title"] == "Too many attempts"
                assert "sy_000000000000_wrong" not in logs.text()
            # health checks stay open
            assert httpx.get(url + "/healthz").status_code == 200
    finally:
        teardown(settings)


def test_a_synchronous_request_past_the_timeout_is_a_504(
    volume_template,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    from _apisupport import prepare, serving, teardown

    from stackyard.api.context import ApiConfig

    settings = prepare(tmp_path / "home", volume_template, "slow")
    try:
        with serving(settings, worker=False, config=ApiConfig(timeout_s=0)) as (url, _logs):
            from _apisupport import Live

            live = Live(url, tmp_path / "home", settings, "slow", _logs)
            with live.client(ADMIN) as c:
                body = assert_problem(c.get("/api/v1/environments"), 504)
                assert body["title"] == "Timed out"
                assert c.get("/healthz").status_code == 200
    finally:
        teardown(settings)


def test_tokens_are_managed_by_admins_and_shown_once(quiet_live: Live) -> None:
    with quiet_live.client(ADMIN) as c:
        made = c.post("/api/v1/tokens", json={"user": "tina", "ttl": "1h"})
        assert made.status_code == 200, made.text
        token = made.json()["token"]
        assert token.startswith("sy_")
        listed = c.get("/api/v1/tokens", params={"user": "tina"})
        assert token not in listed.text
        assert [t["id"] for t in listed.json()["tokens"]] == [made.json()["id"]]
        with quiet_live.client(None, Authorization=f"Bearer {token}") as tina:
            assert tina.get("/api/v1/whoami").json()["user"] == "tina"
            assert tina.get("/api/v1/tokens").status_code == 403
            revoked = c.delete(f"/api/v1/tokens/{made.json()['id']}")
            assert revoked.status_code == 200, revoked.text
            assert tina.get("/api/v1/whoami").status_code == 401
