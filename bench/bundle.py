"""Bundle bench: the standard library bundle applied on warm servers, against a raw floor.

    python bench/bundle.py                      # 20 runs, the machine's servers when reachable
    python bench/bundle.py --runs 50 --server-runs 5
    python bench/bundle.py --local-servers      # always start local servers (untimed)

The bundle is ``postgres-database`` (role, database, grant), ``redis-cache`` (an ACL user) and
``local-volume`` (a directory), expanded with ``stackyard.resolve.graph.expand`` and applied by
the engine over SQLite state and the discovered providers. Each run uses a fresh environment:
``apply`` is plan + apply, ``destroy`` is plan(None) + apply. The *floor* is the same backend
calls made directly (psycopg on one reused connection, redis-py, os), one after another.

One JSON object on stdout (progress goes to stderr): ``floor_ms``, ``apply_p50_ms``,
``apply_p95_ms``, ``destroy_p50_ms``, ``ratio_to_floor``, ``server_ready_s`` and a few extra
keys (see bench/README.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import redis
from _common import quantile, terminate_on_sigterm
from psycopg import sql

from stackyard import library
from stackyard.engine.engine import Engine
from stackyard.engine.events import Event, Events
from stackyard.engine.kinds import naming_lookup
from stackyard.model.component import apply_inputs, load_component
from stackyard.model.ids import ResourceUid
from stackyard.model.values import Secret
from stackyard.providers.api import CreateRequest, DeleteRequest, Kind, ResourceMeta
from stackyard.providers.local import layout
from stackyard.providers.redis import DEFAULT_COMMANDS, LABELS_KEY
from stackyard.providers.registry import ProviderRegistry
from stackyard.resolve.graph import Graph, Instance, expand
from stackyard.state.secrets import SecretBox
from stackyard.state.sql import SqlStateStore

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

DB = ResourceUid("postgres", "default", "shop.db")
CACHE = ResourceUid("redis", "default", "shop.cache")
VOLUME = ResourceUid("volume", "default", "shop.data")


def log(message: str) -> None:
    print(f"[bundle] {message}", file=sys.stderr, flush=True)


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


# -- servers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A warm server the bundle points at."""

    host: str
    port: int
    admin_url: str
    source: str  # "machine" or "local"

    def external(self) -> dict[str, Any]:
        """The outputs a ``requires.server`` alias gets (admin_url kept secret)."""
        return {"host": self.host, "port": self.port, "admin_url": Secret(self.admin_url)}


def _postgres_reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _redis_reachable(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _from_url(url: str, default_port: int, source: str) -> Server:
    parts = urlsplit(url)
    return Server(parts.hostname or "127.0.0.1", parts.port or default_port, url, source)


class LocalServers:
    """Servers created through the ``local`` kinds directly; deleted by ``close``."""

    def __init__(self, kinds: ProviderRegistry, home: Path, env: str) -> None:
        self.kinds = kinds
        self.home = home
        self.env = env
        self._made: list[tuple[Kind, ResourceMeta, dict[str, Any], dict[str, Any]]] = []

    def start(self, kind_name: str, name: str) -> dict[str, Any]:
        """Create (and wait for) a server; returns its outputs."""
        kind = self.kinds.kind(kind_name)
        meta = ResourceMeta(
            address=f"bench/{name}", kind=kind_name, env=self.env, physical_name=name
        )
        config = {"home": str(self.home), "port": 0}
        try:
            applied = kind.create(CreateRequest(meta=meta, config=config))
        except BaseException:
            self._delete(kind, meta, config, {})
            raise
        outputs = dict(applied.outputs)
        self._made.append((kind, meta, config, outputs))
        return outputs

    @staticmethod
    def _delete(
        kind: Kind, meta: ResourceMeta, config: dict[str, Any], outputs: dict[str, Any]
    ) -> None:
        try:
            kind.delete(DeleteRequest(meta=meta, config=config, outputs=outputs))
        except Exception as exc:  # keep cleaning up the others
            log(f"could not delete {meta.address}: {exc}")

    def close(self) -> None:
        while self._made:
            self._delete(*self._made.pop())


def warm_servers(args: argparse.Namespace, local: LocalServers) -> tuple[Server, Server]:
    """The machine's servers when reachable (unless --local-servers), else local ones."""
    if not args.local_servers and _postgres_reachable(args.postgres_url):
        pg = _from_url(args.postgres_url, 5432, "machine")
    else:
        log("starting a local PostgreSQL server (untimed)")
        out = local.start("local.postgres_server", "bench-pg")
        pg = Server(out["host"], int(out["port"]), out["admin_url"], "local")
    if not args.local_servers and _redis_reachable(args.redis_url):
        rd = _from_url(args.redis_url, 6379, "machine")
    else:
        log("starting a local Redis server (untimed)")
        out = local.start("local.redis_server", "bench-redis")
        rd = Server(out["host"], int(out["port"]), out["admin_url"], "local")
    return pg, rd


# -- the stackyard side ------------------------------------------------------------------------


def _instance(
    name: str, uid: ResourceUid, env: str, external: dict[str, dict[str, Any]] | None = None
) -> Instance:
    comp = load_component(library.path(name))
    return Instance(
        uid=uid,
        component=comp,
        inputs=apply_inputs(comp, {}),
        context={"env": env, "env_type": "development", "workload": "shop", "uid": str(uid)},
        external=external or {},
    )


def bundle_graph(engine: Engine, env: str, pg: Server, rd: Server) -> Graph:
    graph, diags = expand(
        [
            _instance("postgres-database", DB, env, {"server": pg.external()}),
            _instance("redis-cache", CACHE, env, {"server": rd.external()}),
            _instance("local-volume", VOLUME, env),
        ],
        env=env,
        naming_for=naming_lookup(engine.kinds),
    )
    if diags:
        raise SystemExit(f"the bundle does not expand: {diags}")
    return graph


class CallTimes:
    """An Events hook: wall time of every provider call, from 'started' to 'finished'."""

    def __init__(self) -> None:
        self.open: dict[str, float] = {}
        self.calls: dict[str, list[float]] = {}
        self.enabled = False

    def __call__(self, event: Event) -> None:
        if not self.enabled:
            return
        key = f"{event.action} {event.address}"
        if event.type == "started":
            self.open[key] = event.ts
        elif event.type in ("finished", "failed") and key in self.open:
            self.calls.setdefault(key, []).append(event.ts - self.open.pop(key))

    def summary(self) -> dict[str, float]:
        return {key: ms(statistics.median(v)) for key, v in sorted(self.calls.items())}


@dataclass
class StackyardRun:
    plan_s: float
    apply_s: float
    destroy_plan_s: float
    destroy_s: float


def stackyard_once(engine: Engine, env: str, pg: Server, rd: Server) -> StackyardRun:
    """Apply and destroy the bundle in ``env``; destroys on failure too."""
    graph = bundle_graph(engine, env, pg, rd)
    destroyed = False
    try:
        t0 = time.perf_counter()
        planned = engine.plan(env, graph)
        t1 = time.perf_counter()
        result = engine.apply(planned, graph)
        t2 = time.perf_counter()
        if not result.ok:
            raise RuntimeError(f"apply failed in {env}: {result.to_json()}")
        if planned.summary().get("create") != len(graph.nodes):
            raise RuntimeError(f"expected {len(graph.nodes)} creates: {planned.summary()}")
        t3 = time.perf_counter()
        gone = engine.plan(env, None)
        t4 = time.perf_counter()
        removed = engine.apply(gone, None)
        t5 = time.perf_counter()
        destroyed = removed.ok
        if not removed.ok:
            raise RuntimeError(f"destroy failed in {env}: {removed.to_json()}")
    finally:
        if not destroyed:
            try:
                engine.converge(env, None)
            except Exception as exc:
                log(f"could not destroy {env}: {exc}")
    return StackyardRun(t1 - t0, t2 - t1, t4 - t3, t5 - t4)


# -- the floor ---------------------------------------------------------------------------------


class Floor:
    """The bundle's backend calls made directly, on one reused connection per server."""

    def __init__(self, pg: Server, rd: Server, root: Path) -> None:
        self.pg = psycopg.connect(pg.admin_url, autocommit=True, connect_timeout=5)
        self.rd = redis.Redis.from_url(rd.admin_url, decode_responses=True, socket_timeout=5)
        self.root = root
        self.live: list[str] = []

    def create(self, name: str) -> tuple[float, dict[str, float]]:
        """Role, database, grant, ACL user, directory: (elapsed seconds, seconds per step)."""
        role = database = sql.Identifier(name)
        label = f"stackyard:{name}:floor"
        password = secrets.token_urlsafe(24)
        digest = hashlib.sha256(password.encode()).hexdigest()
        rules = ["reset", "resetchannels", "on", f"#{digest}", f"~{name}:*", f"&{name}:*"]
        path = self.root / name
        x = self.pg.execute
        steps: list[tuple[str, Callable[[], Any]]] = [
            (
                "create_role",
                lambda: x(
                    sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}").format(
                        role, sql.Literal(password)
                    )
                ),
            ),
            (
                "comment_role",
                lambda: x(sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(label))),
            ),
            (
                "create_database",
                lambda: x(
                    sql.SQL(
                        "CREATE DATABASE {} WITH OWNER {} ENCODING 'UTF8' TEMPLATE template0"
                    ).format(database, role)
                ),
            ),
            (
                "comment_database",
                lambda: x(
                    sql.SQL("COMMENT ON DATABASE {} IS {}").format(database, sql.Literal(label))
                ),
            ),
            (
                "grant",
                lambda: x(
                    sql.SQL("GRANT CONNECT, CREATE, TEMP ON DATABASE {} TO {}").format(
                        database, role
                    )
                ),
            ),
            (
                "acl_setuser",
                lambda: self.rd.execute_command(
                    "ACL", "SETUSER", name, *rules, *DEFAULT_COMMANDS.split()
                ),
            ),
            ("hset_label", lambda: self.rd.hset(LABELS_KEY, name, label)),
            ("mkdir", lambda: path.mkdir(mode=0o755)),
            (
                "marker",
                lambda: (path / layout.MARKER).write_text(label + "\n", encoding="utf-8"),
            ),
        ]
        self.live.append(name)
        per_step: dict[str, float] = {}
        t0 = last = time.perf_counter()
        for step, call in steps:
            call()
            now = time.perf_counter()
            per_step[step] = now - last
            last = now
        return last - t0, per_step

    def drop(self, name: str) -> float:
        """The matching drops; returns the elapsed seconds."""
        t0 = time.perf_counter()
        self.pg.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        self.pg.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
        self.rd.execute_command("ACL", "DELUSER", name)
        self.rd.hdel(LABELS_KEY, name)
        shutil.rmtree(self.root / name, ignore_errors=True)
        elapsed = time.perf_counter() - t0
        self.live.remove(name)
        return elapsed

    def close(self) -> None:
        for name in list(self.live):
            try:
                self.drop(name)
            except Exception as exc:
                log(f"could not drop floor objects {name}: {exc}")
        self.pg.close()
        self.rd.close()


# -- cold start --------------------------------------------------------------------------------


def server_ready_once(kinds: ProviderRegistry) -> float:
    """Seconds from nothing to a psycopg session on a new local.postgres_server."""
    kind = kinds.kind("local.postgres_server")
    with tempfile.TemporaryDirectory(prefix="stackyard-bench-cold-") as tmp:
        meta = ResourceMeta(
            address="bench/cold-pg",
            kind=kind.name,
            env="cold",
            physical_name=f"cold-{secrets.token_hex(3)}",
        )
        config = {"home": tmp, "port": 0}
        outputs: dict[str, Any] = {}
        try:
            t0 = time.perf_counter()
            outputs = dict(kind.create(CreateRequest(meta=meta, config=config)).outputs)
            deadline = t0 + 60
            while True:
                try:
                    with psycopg.connect(outputs["admin_url"], connect_timeout=2) as conn:
                        conn.execute("SELECT 1")
                    break
                except psycopg.OperationalError:
                    if time.perf_counter() > deadline:
                        raise
                    time.sleep(0.01)
            return time.perf_counter() - t0
        finally:
            kind.delete(DeleteRequest(meta=meta, config=config, outputs=outputs))


# -- the bench ---------------------------------------------------------------------------------


@contextmanager
def env_var(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def timed_runs(count: int, warmup: int, what: str, once: Callable[[int], Any]) -> list[Any]:
    out = []
    for i in range(warmup + count):
        value = once(i)
        if i >= warmup:
            out.append(value)
        if (i + 1) % 5 == 0 or i + 1 == warmup + count:
            log(f"{what}: {i + 1}/{warmup + count}")
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    kinds = ProviderRegistry.discover()
    times = CallTimes()
    tag = secrets.token_hex(3)
    with (
        tempfile.TemporaryDirectory(prefix="stackyard-bench-") as tmp,
        env_var("STACKYARD_HOME", tmp),
    ):
        home = Path(tmp)
        local = LocalServers(kinds, home, f"bench{tag}")
        store = SqlStateStore(f"sqlite:///{home}/state.db", SecretBox.from_home(home))
        floor: Floor | None = None
        try:
            pg, rd = warm_servers(args, local)
            log(
                f"postgres: {pg.source} {pg.host}:{pg.port}; redis: {rd.source} {rd.host}:{rd.port}"
            )
            engine = Engine(
                store=store, kinds=kinds, events=Events(times), parallelism=args.parallelism
            )

            floor = Floor(pg, rd, home / "floor")
            floor.root.mkdir()
            runs: list[StackyardRun] = []
            floor_runs: list[tuple[float, dict[str, float], float]] = []
            total = args.warmup + args.runs
            for i in range(total):
                timed = i >= args.warmup
                times.enabled = timed
                name = f"floor-{i}-{tag}"
                # Alternate which side goes first: CREATE DATABASE's cost drifts as the runs
                # go on (from ~70 to ~200 ms on the reference machine), so both sides must
                # see the server in the same state.
                for side in ("stackyard", "floor") if i % 2 == 0 else ("floor", "stackyard"):
                    if side == "stackyard":
                        one = stackyard_once(engine, f"b{i}{tag}", pg, rd)
                        if timed:
                            runs.append(one)
                    else:
                        created, steps = floor.create(name)
                        dropped = floor.drop(name)
                        if timed:
                            floor_runs.append((created, steps, dropped))
                if (i + 1) % 5 == 0 or i + 1 == total:
                    log(f"runs: {i + 1}/{total} (the first {args.warmup} untimed)")
        finally:
            if floor is not None:
                floor.close()
            store.close()
            local.close()

    ready = timed_runs(args.server_runs, 0, "cold start", lambda _: server_ready_once(kinds))

    apply_s = [r.plan_s + r.apply_s for r in runs]
    destroy_s = [r.destroy_plan_s + r.destroy_s for r in runs]
    floor_s = [c for c, _, _ in floor_runs]
    step_names = floor_runs[0][1]
    floor_ms = ms(statistics.median(floor_s))
    apply_p50 = ms(statistics.median(apply_s))
    return {
        "floor_ms": floor_ms,
        "apply_p50_ms": apply_p50,
        "apply_p95_ms": ms(quantile(apply_s, 0.95)),
        "destroy_p50_ms": ms(statistics.median(destroy_s)),
        "ratio_to_floor": round(apply_p50 / floor_ms, 3) if floor_ms else None,
        "server_ready_s": round(statistics.median(ready), 3),
        "runs": args.runs,
        "plan_p50_ms": ms(statistics.median(r.plan_s for r in runs)),
        "apply_only_p50_ms": ms(statistics.median(r.apply_s for r in runs)),
        "destroy_p95_ms": ms(quantile(destroy_s, 0.95)),
        "floor_destroy_ms": ms(statistics.median(d for _, _, d in floor_runs)),
        "floor_p95_ms": ms(quantile(floor_s, 0.95)),
        "floor_steps_p50_ms": {
            k: ms(statistics.median(steps[k] for _, steps, _ in floor_runs)) for k in step_names
        },
        "server_ready_runs_s": [round(s, 3) for s in ready],
        "servers": {"postgres": pg.source, "redis": rd.source},
        "call_p50_ms": times.summary() if args.calls else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="The library bundle on warm servers, vs a floor.")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (each side)")
    parser.add_argument("--server-runs", type=int, default=3, help="cold starts (median)")
    parser.add_argument("--parallelism", type=int, default=10)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument(
        "--local-servers", action="store_true", help="start local servers even if others answer"
    )
    parser.add_argument(
        "--calls", action="store_true", help="add call_p50_ms: each provider call's median"
    )
    args = parser.parse_args()
    if args.runs < 1 or args.server_runs < 1 or args.warmup < 0:
        parser.error("--runs and --server-runs must be at least 1, --warmup at least 0")
    terminate_on_sigterm()
    result = run(args)
    if result["call_p50_ms"] is None:
        del result["call_p50_ms"]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
