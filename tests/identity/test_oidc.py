"""OIDC tokens made in the test with its own key pairs: the JWKS from a file and from a URL
(a tiny HTTP server on 127.0.0.1), every forgery and mismatch refused, and groups reaching
RBAC as teams."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _oidc_issuer import Issuer, JwksServer

from stackyard.environments import grants
from stackyard.environments.workspace import Workspace
from stackyard.errors import InvalidInputError, PermissionDeniedError
from stackyard.identity import Authenticator, IdentityUnavailableError, NotAuthenticated
from stackyard.identity.oidc import OidcConfig, OidcVerifier
from stackyard.settings import Settings

pytestmark = pytest.mark.integration


def _oidc(settings: Settings, issuer: Issuer, jwks: str, **over: Any) -> Settings:
    """An issuer whose ``preferred_username`` names users and whose every group is a team
    (both opted in, as an operator would for a trusted identity provider)."""
    values: dict[str, Any] = {
        "oidc_issuer": issuer.url,
        "oidc_audience": (issuer.audience,),
        "oidc_jwks": jwks,
        "oidc_user_claim": "preferred_username",
        "oidc_teams": (("*", "*"),),
    }
    return dataclasses.replace(settings, **{**values, **over})


def test_by_default_the_subject_names_the_user_and_groups_give_no_teams(
    settings: Settings, issuer: Issuer, jwks_file: Path
) -> None:
    """A user who can choose their ``preferred_username`` (or make a group named after a
    privileged team) gets nothing from it unless the operator opted in."""
    plain = dataclasses.replace(
        settings,
        oidc_issuer=issuer.url,
        oidc_audience=(issuer.audience,),
        oidc_jwks=str(jwks_file),
    )
    with Authenticator(plain) as auth:
        who = auth.authenticate(
            f"Bearer {issuer.token(preferred_username='root-admin', groups=['platform'])}"
        )
    assert (who.user, who.teams) == ("0b5c1f9e-user-olivia", ())
    mapped = dataclasses.replace(plain, oidc_teams=(("idp-ops", "ops"),))
    with Authenticator(mapped) as auth:
        who = auth.authenticate(f"Bearer {issuer.token(groups=['idp-ops', 'platform'])}")
    assert who.teams == ("ops",)


@pytest.fixture
def jwks_file(tmp_path: Path, issuer: Issuer) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(issuer.jwks()))
    return path


@pytest.fixture
def auth(settings: Settings, issuer: Issuer, jwks_file: Path) -> Any:
    with Authenticator(_oidc(settings, issuer, str(jwks_file))) as a:
        yield a


def test_a_valid_token_names_the_user_and_the_teams(auth: Authenticator, issuer: Issuer) -> None:
    who = auth.authenticate(f"Bearer {issuer.token()}")
    assert (who.user, who.teams, who.via, who.token_id) == (
        "olivia",
        ("ops", "payments"),
        "oidc",
        None,
    )
    es = auth.authenticate(f"Bearer {issuer.token(alg='ES256', groups='ops')}")
    assert (es.user, es.teams) == ("olivia", ("ops",))
    # no groups claim: no teams
    bare = auth.authenticate(f"Bearer {issuer.token(groups=None)}")
    assert (bare.user, bare.teams) == ("olivia", ())


def _now() -> int:
    return int(time.time())


FORGERIES: list[tuple[str, Callable[[Issuer], str]]] = [
    ("wrong-issuer", lambda i: i.token(iss="https://evil.example.test")),
    ("wrong-audience", lambda i: i.token(aud="another-client")),
    ("no-audience", lambda i: i.token(aud=None)),
    ("expired", lambda i: i.token(exp=_now() - 120)),
    ("no-exp", lambda i: i.token(exp=None)),
    ("not-yet-valid", lambda i: i.token(nbf=_now() + 600)),
    ("alg-none", lambda i: i.forged_none()),
    ("hs256-with-public-key", lambda i: i.forged_hs256()),
    ("other-key", lambda i: Issuer.make(i.url, audience=i.audience).token()),
    ("tampered", lambda i: _tamper(i.token())),
    ("rs256-claiming-ec-kid", lambda i: i.token(kid="ec-1")),
    ("no-user", lambda i: i.token(preferred_username=None, sub=None)),
    ("garbage", lambda i: "not.a.jwt"),
]


def _tamper(token: str) -> str:
    header, body, sig = token.split(".")
    claims = json.loads(_unb64(body))
    claims["preferred_username"] = "root-admin"
    from _oidc_issuer import _b64

    return f"{header}.{_b64(json.dumps(claims).encode())}.{sig}"


def _unb64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize("forge", [f for _, f in FORGERIES], ids=[name for name, _ in FORGERIES])
def test_forged_and_mismatched_tokens_are_refused(
    auth: Authenticator, issuer: Issuer, forge: Callable[[Issuer], str]
) -> None:
    token = forge(issuer)
    with pytest.raises(NotAuthenticated) as err:
        auth.authenticate(f"Bearer {token}")
    assert err.value.message == "Not authenticated"  # the same for every reason


def test_within_the_leeway_an_expired_token_still_passes(
    auth: Authenticator, issuer: Issuer
) -> None:
    assert auth.authenticate(f"Bearer {issuer.token(exp=_now() - 5)}").user == "olivia"


def test_without_an_issuer_jwts_are_refused(settings: Settings, issuer: Issuer) -> None:
    with Authenticator(settings) as auth, pytest.raises(NotAuthenticated):
        auth.authenticate(f"Bearer {issuer.token()}")


def test_the_user_claim_and_the_group_map_are_configurable(
    settings: Settings, issuer: Issuer, jwks_file: Path
) -> None:
    configured = _oidc(
        settings,
        issuer,
        str(jwks_file),
        oidc_user_claim="email",
        oidc_groups_claim="roles",
        oidc_teams=(("idp-ops", "ops"), ("idp-admins", "platform")),
    )
    with Authenticator(configured) as auth:
        who = auth.authenticate(
            f"Bearer {issuer.token(email='olivia@example.test', roles=['idp-ops', 'stray'])}"
        )
        assert (who.user, who.teams) == ("olivia@example.test", ("ops",))  # unmapped: dropped
        with pytest.raises(NotAuthenticated):  # the configured claim is missing
            auth.authenticate(f"Bearer {issuer.token()}")


def test_the_jwks_over_http_is_cached_and_refetched_for_a_new_key(
    settings: Settings, issuer: Issuer, jwks_server: JwksServer
) -> None:
    config = OidcConfig.from_settings(_oidc(settings, issuer, jwks_server.url))
    assert config is not None
    clock = [0.0]
    verifier = OidcVerifier(config, clock=lambda: clock[0])
    try:
        for _ in range(3):
            claims = verifier.verify(issuer.token())
            assert claims is not None and claims.user == "olivia"
        assert jwks_server.fetches == 1  # cached

        # a key rotation: a token signed by a key the cache lacks makes one refetch
        new_key = Issuer.make(issuer.url, audience=issuer.audience).rsa_key
        rotated = dataclasses.replace(issuer, extra_keys={"rsa-2": new_key})
        jwks_server.document = rotated.jwks(rotated=True)
        token = rotated.token(kid="rsa-2")
        clock[0] += 31
        assert verifier.verify(token) is not None
        assert jwks_server.fetches == 2
        # an unknown kid does not make the issuer be fetched on every request
        unknown = issuer.token(kid="nope")
        assert verifier.verify(unknown) is None
        assert verifier.verify(unknown) is None
        assert jwks_server.fetches == 2
    finally:
        verifier.close()


def test_an_unreachable_issuer_is_unavailable_not_a_pass(
    settings: Settings, issuer: Issuer, jwks_server: JwksServer
) -> None:
    jwks_server.status = 500
    with Authenticator(_oidc(settings, issuer, jwks_server.url)) as auth:
        with pytest.raises(IdentityUnavailableError):
            auth.authenticate(f"Bearer {issuer.token()}")
        # stackyard tokens still work while the issuer is down (they need no JWKS)
        with pytest.raises(NotAuthenticated):
            auth.authenticate("Bearer sy_0123456789ab_" + "a" * 43)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"oidc_audience": ()}, "STACKYARD_OIDC_AUDIENCE"),
        ({"oidc_jwks": None}, "STACKYARD_OIDC_JWKS"),
        ({"oidc_jwks": "http://idp.example.test/jwks"}, "not an https:// URL"),
    ],
    ids=["no-audience", "no-jwks", "plain-http-remote"],
)
def test_an_incomplete_configuration_is_refused(
    settings: Settings, issuer: Issuer, over: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Authenticator(_oidc(settings, issuer, "/nonexistent", **over))


def test_the_configuration_comes_from_the_environment(tmp_path: Path) -> None:
    loaded = Settings.load(
        home=tmp_path,
        environ={
            "STACKYARD_OIDC_ISSUER": "https://idp.example.test",
            "STACKYARD_OIDC_AUDIENCE": "stackyard, cli",
            "STACKYARD_OIDC_JWKS": "https://idp.example.test/jwks",
            "STACKYARD_OIDC_USER_CLAIM": "email",
            "STACKYARD_OIDC_GROUPS_CLAIM": "roles",
            "STACKYARD_OIDC_TEAMS": "idp-ops=ops, idp-admins=platform",
            "STACKYARD_TOKEN_MAX_TTL": "90d",
        },
    )
    assert loaded.oidc_issuer == "https://idp.example.test"
    assert loaded.oidc_audience == ("stackyard", "cli")
    assert loaded.oidc_jwks == "https://idp.example.test/jwks"
    assert (loaded.oidc_user_claim, loaded.oidc_groups_claim) == ("email", "roles")
    assert loaded.oidc_teams == (("idp-ops", "ops"), ("idp-admins", "platform"))
    assert loaded.token_max_ttl_s == 90 * 86400
    with pytest.raises(InvalidInputError, match="oidc_teams"):
        Settings.load(home=tmp_path, environ={"STACKYARD_OIDC_TEAMS": "ops"})


def test_groups_reach_rbac_as_teams(
    settings: Settings,
    issuer: Issuer,
    jwks_file: Path,
    open_as: Callable[..., Workspace],
) -> None:
    """An admin grants a role to team ``ops``; an OIDC user in group ``ops`` holds it, the same
    user without the group does not."""
    admin = open_as(settings)
    grants.grant(admin, grants.parse("admin", user=None, team="ops", env=None, env_type=None))
    with Authenticator(_oidc(settings, issuer, str(jwks_file))) as auth:
        member = auth.authenticate(f"Bearer {issuer.token(preferred_username='olivia')}")
        outsider = auth.authenticate(
            f"Bearer {issuer.token(preferred_username='oscar', groups=['payments'])}"
        )
    as_member = open_as(settings, member.user, member.teams)
    assert "ops" in as_member.access.teams()
    done = grants.grant(
        as_member, grants.parse("viewer", user="zoe", team=None, env=None, env_type=None)
    )
    assert done.changed
    as_outsider = open_as(settings, outsider.user, outsider.teams)
    with pytest.raises(PermissionDeniedError):
        grants.grant(
            as_outsider, grants.parse("viewer", user="zed", team=None, env=None, env_type=None)
        )
    events = [(e.actor, e.result) for e in admin.governance.audit()][-2:]
    assert events == [("olivia", "ok"), ("oscar", "denied")]


def test_no_token_reaches_the_log(
    auth: Authenticator, issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good, bad = issuer.token(), issuer.token(aud="other")
    auth.authenticate(f"Bearer {good}", client="10.1.1.1")
    with pytest.raises(NotAuthenticated):
        auth.authenticate(f"Bearer {bad}", client="10.1.1.1")
    assert "10.1.1.1" in caplog.text  # the failure is logged, by client
    for token in (good, bad):
        for part in token.split("."):
            assert part not in caplog.text
