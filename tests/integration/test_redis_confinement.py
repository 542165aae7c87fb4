"""A workload's Redis user stays confined whatever its ``commands`` say (issue 11, item 5).

``-@admin -@dangerous`` and the key/channel prefix always apply; only a platform binding's
``platform_commands`` come after them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.exceptions
import yaml

from _platform import EXAMPLES, Stage
from _sweeper import Sweeper
from stackyard.environments.deploy import deploy_files
from stackyard.errors import InvalidInputError, ProviderPermanentError
from stackyard.providers.api import CreateRequest, DeleteRequest, ResourceMeta
from stackyard.providers.redis import Clients, make_provider
from stackyard.resolve.naming import physical_name

pytestmark = pytest.mark.integration

UID = "redis.default#w.cache"
DENIED = (redis.exceptions.NoPermissionError, redis.exceptions.ResponseError)


@pytest.fixture
def kind() -> Iterator[Any]:
    clients = Clients()
    yield make_provider(clients).kind("redis.acl_user")
    clients.close()


def _meta(kind: Any, env: str) -> ResourceMeta:
    return ResourceMeta(
        address=f"{UID}/user",
        kind="redis.acl_user",
        env=env,
        physical_name=physical_name(env, UID, "user", kind.naming),
    )


def _assert_confined(url: str, name: str, password: str, other_key: str) -> None:
    admin = redis.Redis.from_url(url, decode_responses=True)
    client = redis.Redis.from_url(url, username=name, password=password, decode_responses=True)
    try:
        admin.set(other_key, "theirs")
        assert client.set(f"{name}:mine", "1")  # its own prefix works
        with pytest.raises(DENIED):
            client.execute_command("ACL", "SETUSER", name, "~*", "+@all")
        with pytest.raises(DENIED):
            client.get(other_key)
        with pytest.raises(DENIED):
            client.execute_command("CONFIG", "GET", "maxmemory")
        with pytest.raises(DENIED):
            client.execute_command("CONFIG", "SET", "maxmemory", "1")
        with pytest.raises(DENIED):
            client.execute_command("FLUSHALL")
        with pytest.raises(DENIED):
            client.execute_command("FLUSHDB")
        with pytest.raises(DENIED):
            client.execute_command("SHUTDOWN", "NOSAVE")
        with pytest.raises(DENIED):
            client.execute_command("DEBUG", "SLEEP", "0")
        with pytest.raises(DENIED):
            client.execute_command("KEYS", "*")
        with pytest.raises(DENIED):
            client.publish("elsewhere:events", "x")
        assert admin.get(other_key) == "theirs"
        assert admin.ping()  # still up
    finally:
        client.close()
        admin.delete(other_key, f"{name}:mine")
        admin.close()


@pytest.mark.parametrize(
    "commands",
    [
        "+@all",
        "+@all +acl +config +flushall +shutdown",
        "+@admin +@dangerous +@all",
        "+acl|setuser",
    ],
)
def test_any_commands_stay_confined(
    kind: Any, redis_url: str, sweeper: Sweeper, commands: str
) -> None:
    meta = _meta(kind, sweeper.env)
    config = {"server": redis_url, "password": "pw-confined", "commands": commands}
    out = kind.create(CreateRequest(meta, config)).outputs
    try:
        if commands == "+acl|setuser":
            client = redis.Redis.from_url(
                redis_url, username=out["username"], password="pw-confined"
            )
            try:
                with pytest.raises(DENIED):
                    client.execute_command("ACL", "SETUSER", out["username"], "~*")
            finally:
                client.close()
        else:
            _assert_confined(redis_url, out["username"], "pw-confined", f"{sweeper.env}x:secret")
    finally:
        kind.delete(DeleteRequest(meta, config, {}))


@pytest.mark.parametrize("commands", ["allkeys", "+@all ~*", "+@all &*", "resetkeys", "+@all on"])
def test_key_channel_and_flag_rules_are_refused(
    kind: Any, redis_url: str, sweeper: Sweeper, commands: str
) -> None:
    config = {"server": redis_url, "password": "pw", "commands": commands}
    with pytest.raises(ProviderPermanentError):
        kind.create(CreateRequest(_meta(kind, sweeper.env), config))


def test_platform_commands_widen_after_the_confinement(
    kind: Any, redis_url: str, sweeper: Sweeper
) -> None:
    meta = _meta(kind, sweeper.env)
    config = {
        "server": redis_url,
        "password": "pw-wide",
        "commands": "+@all",
        "platform_commands": "+config|get",
    }
    out = kind.create(CreateRequest(meta, config)).outputs
    client = redis.Redis.from_url(
        redis_url, username=out["username"], password="pw-wide", decode_responses=True
    )
    try:
        assert client.execute_command("CONFIG", "GET", "maxmemory")
        with pytest.raises(DENIED):
            client.execute_command("CONFIG", "SET", "maxmemory", "1")
    finally:
        client.close()
        kind.delete(DeleteRequest(meta, config, {}))


def _score(tmp_path: Path, params: dict[str, Any]) -> Path:
    data = yaml.safe_load((EXAMPLES / "hello" / "score.yaml").read_text())
    data["resources"]["cache"]["params"] = params
    folder = tmp_path / "app"
    folder.mkdir(exist_ok=True)
    (folder / "app.py").write_text((EXAMPLES / "hello" / "app.py").read_text())
    path = folder / "score.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_workload_cannot_set_platform_commands(stage: Stage, tmp_path: Path) -> None:
    dev = stage.name("dev")
    path = _score(tmp_path, {"platform_commands": "+@all"})
    with stage.ws() as ws:
        serial = ws.store.snapshot(dev).serial
        with pytest.raises(InvalidInputError) as err:
            deploy_files(ws, [path], dev, confirm=lambda _p: pytest.fail("no plan expected"))
        summaries = [d.summary for d in err.value.diagnostics]
        assert "Input reserved for the platform" in summaries, summaries
        assert ws.store.snapshot(dev).serial == serial


def test_a_deployed_workload_asking_all_commands_is_confined(
    stage: Stage, tmp_path: Path, redis_url: str
) -> None:
    from stackyard.environments.inspect import outputs

    dev = stage.name("dev")
    path = _score(tmp_path, {"commands": "+@all"})
    with stage.ws() as ws:
        result = deploy_files(ws, [path], dev, confirm=lambda _p: True)
        assert result.deployment.status == "succeeded", result.deployment
        cache = outputs(ws, dev, "hello", reveal=True)["cache"]["outputs"]
    _assert_confined(redis_url, cache["username"], cache["password"], f"{stage.prefix}y:secret")
