"""Peers bench: the same PostgreSQL bundle with stackyard, pyinfra and Ansible, side by side.

    python bench/peers.py                   # median of 7, every tool
    python bench/peers.py --runs 2 --tools stackyard,stackyard-no-server,pyinfra
    python bench/peers.py --install-only    # only prepare the peers' virtual environment

The bundle: a login role, a database it owns, CONNECT/CREATE/TEMP granted on it, against the
machine's PostgreSQL (127.0.0.1 only). stackyard deploys it as a Score workload (the
library's ``postgres-database`` and a ``sleep`` container, see cli.py) into ``dev`` of a
temporary home, in both of cli.py's modes, as two tools: ``stackyard`` through the bench's
own warm command server (``STACKYARD_DAEMON=1``, what a user gets by default; the timing waits
for the server to answer first) and ``stackyard-no-server`` with each command in its own
process (``STACKYARD_DAEMON=0``), each deploying its own names; pyinfra 3 runs a deploy
file on ``@local`` (``postgres.role``, ``postgres.database``, ``postgres.sql`` for the grant);
Ansible runs a playbook on ``localhost`` with ``connection: local`` (community.postgresql
``postgresql_user``, ``postgresql_db``, ``postgresql_privs``). pyinfra and Ansible are not
dependencies of the project: the bench installs them from PyPI into their own virtual
environment, kept for the next run under ``~/.cache/stackyard-bench/peers-venv``
(``--venv``), with psycopg2-binary for Ansible's modules. community.postgresql comes from
ansible-galaxy when it answers, otherwise from the ``ansible`` package, which bundles it.

Every figure is one whole process, wall clock. Each round creates the bundle under fresh names
with each tool, then re-runs each with nothing to change; the tools take turns going first,
round by round. Between rounds (untimed) stackyard removes its workloads and the bench drops
the peers' databases and roles; every name made is dropped at the end, and the command server
stopped, also on failure, Ctrl-C or SIGTERM. Prints one JSON object (progress on stderr)::

    {"tools": {"stackyard": {"create": {"p50", "p90", "max", "runs"}, "nochange": {...}},
               "stackyard-no-server": {...}, "pyinfra": {...}, "ansible": {...}},
     "ratios": {"create": {"pyinfra": x, "ansible": y}, "nochange": {...}},
     "ratios_without_server": {"create": {...}, "nochange": {...}},
     "floor": {"create_database": {"p50", "p90", "max", "runs"}},
     "stackyard_create_split": {"create_database": {...}, "rest": {...}},
     "checks": {...}, "machine": {...}, "leftovers": {...}}

A ratio is stackyard's p50 over the peer's p50 (below 1: stackyard is faster): ``ratios`` for
``stackyard`` (server on), ``ratios_without_server`` for ``stackyard-no-server``. ``floor``
is a bare ``CREATE DATABASE`` timed after each round's clean-up: the part of every tool's
create that is PostgreSQL's own (it varies with the machine's disk, and moves the ratios).
``stackyard_create_split`` splits each timed stackyard create (server on) into the time its
``postgres.database`` resource took (from the deployment's own events: started to finished,
almost all of it ``CREATE DATABASE``) and the rest of the whole process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from _common import (
    DEFAULT_PG_URL,
    DEFAULT_REDIS_URL,
    PARENT,
    Log,
    make_log,
    masked,
    run_child,
    temp_home,
    terminate_on_sigterm,
)
from psycopg import sql

from cli import (
    CommandFailed,
    Stackyard,
    child_env,
    figures,
    guarded,
    leftover,
    machine_info,
    run_timed,
)

TOOLS = ("stackyard", "stackyard-no-server", "pyinfra", "ansible")
PEERS = ("pyinfra", "ansible")
#: stackyard as a tool, in each of cli.py's command-server modes.
STACKYARD_MODES = {"stackyard": "on", "stackyard-no-server": "off"}
#: Where each stackyard tool's ratios to the peers go in the JSON.
RATIO_KEYS = {"stackyard": "ratios", "stackyard-no-server": "ratios_without_server"}
#: The first letter of each tool's names (fresh each round).
NAME_PREFIX = {"stackyard": "s", "stackyard-no-server": "n", "pyinfra": "p", "ansible": "a"}
DEFAULT_VENV = Path("~/.cache/stackyard-bench/peers-venv").expanduser()
PYINFRA_SPEC = "pyinfra>=3,<4"
ANSIBLE_CORE_SPEC = "ansible-core"
ANSIBLE_SPEC = "ansible"  # the full package: bundles community.postgresql
INSTALL_TIMEOUT_S = 1800
GALAXY_TIMEOUT_S = 120
LOOPBACK = ("127.0.0.1", "localhost", "::1")

PYINFRA_DEPLOY = '''\
"""The bundle for pyinfra: a login role, a database it owns, CONNECT/CREATE/TEMP granted."""

import os

from pyinfra.operations import postgres

NAME = os.environ["BENCH_NAME"]
CONN = {
    "psql_user": os.environ["BENCH_PG_USER"],
    "psql_password": os.environ.get("BENCH_PG_PASSWORD") or None,
    "psql_host": os.environ["BENCH_PG_HOST"],
    "psql_port": int(os.environ["BENCH_PG_PORT"]),
    "psql_database": "postgres",
}

postgres.role(
    name="login role", role=NAME, password=os.environ["BENCH_PASSWORD"], login=True, **CONN
)
postgres.database(
    name="database", database=NAME, owner=NAME, encoding="UTF8", template="template0", **CONN
)
# pyinfra has no privileges operation: the grant is plain SQL (it runs on every deploy).
postgres.sql(
    f'GRANT CONNECT, CREATE, TEMP ON DATABASE "{NAME}" TO "{NAME}"',
    name="grant",
    **CONN,
)
'''

ANSIBLE_PLAYBOOK = """\
# The bundle for Ansible: a login role, a database it owns, CONNECT/CREATE/TEMP granted.
- hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/community.postgresql.all:
      login_host: "{{ pg_host }}"
      login_port: "{{ pg_port }}"
      login_user: "{{ pg_user }}"
      login_password: "{{ pg_password }}"
  tasks:
    - name: login role
      community.postgresql.postgresql_user:
        name: "{{ bench_name }}"
        password: "{{ bench_password }}"
        role_attr_flags: LOGIN
    - name: database
      community.postgresql.postgresql_db:
        name: "{{ bench_name }}"
        owner: "{{ bench_name }}"
        encoding: UTF8
        template: template0
    - name: grant
      community.postgresql.postgresql_privs:
        login_db: postgres
        type: database
        objs: "{{ bench_name }}"
        privs: CONNECT,CREATE,TEMP
        roles: "{{ bench_name }}"
"""


# -- the peers' virtual environment --------------------------------------------------------------


def _run(argv: list[str], log: Log, *, timeout: float, env: dict[str, str] | None = None) -> bool:
    """Run an install step; True when it exited 0 (its output's tail goes to the log if not)."""
    try:
        res, _ = run_child(argv, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"{' '.join(argv[:4])} … timed out after {timeout:.0f} s")
        return False
    if res.returncode != 0:
        log(f"{' '.join(argv[:4])} … exited {res.returncode}: {masked(res.stderr[-800:])}")
    return res.returncode == 0


def _collection_dirs(venv: Path) -> list[Path]:
    """Where community.postgresql may be: galaxy's path under the venv, or the ``ansible``
    package's bundled collections in site-packages."""
    return [
        venv / "collections" / "ansible_collections" / "community" / "postgresql",
        *venv.glob("lib/python*/site-packages/ansible_collections/community/postgresql"),
    ]


def collection_version(venv: Path, *, galaxy_only: bool = False) -> str | None:
    """community.postgresql's version in ``venv`` (only galaxy's copy with ``galaxy_only``),
    or None when it is not installed."""
    for directory in _collection_dirs(venv)[:1] if galaxy_only else _collection_dirs(venv):
        manifest = directory / "MANIFEST.json"
        if manifest.is_file():
            return str(json.loads(manifest.read_text())["collection_info"]["version"])
    return None


def ensure_venv(venv: Path, log: Log, *, reinstall: bool) -> dict[str, Any]:
    """The peers' virtual environment, made (or reused) with pyinfra, ansible-core,
    psycopg2-binary and community.postgresql; what was installed, and from where."""
    if reinstall and venv.exists():
        shutil.rmtree(venv)
    python = venv / "bin" / "python"
    env = child_env()
    if not python.exists():
        log(f"creating the peers' virtual environment in {venv}")
        venv.parent.mkdir(parents=True, exist_ok=True)
        if not _run([sys.executable, "-m", "venv", str(venv)], log, timeout=300):
            raise CommandFailed(f"could not create a virtual environment in {venv}")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if not (venv / "bin" / "pyinfra").exists() or not (venv / "bin" / "ansible-playbook").exists():
        log(f"installing {PYINFRA_SPEC}, {ANSIBLE_CORE_SPEC} and psycopg2-binary from PyPI")
        if not _run(
            [*pip, PYINFRA_SPEC, ANSIBLE_CORE_SPEC, "psycopg2-binary"],
            log,
            timeout=INSTALL_TIMEOUT_S,
            env=env,
        ):
            raise CommandFailed("could not install pyinfra and ansible-core from PyPI")
    if collection_version(venv) is None:
        log("installing community.postgresql with ansible-galaxy")
        galaxy = [
            str(venv / "bin" / "ansible-galaxy"),
            "collection",
            "install",
            "community.postgresql",
            "-p",
            str(venv / "collections"),
        ]
        ansible_home = {"ANSIBLE_HOME": str(venv / "ansible-home")}
        installed = _run(galaxy, log, timeout=GALAXY_TIMEOUT_S, env=child_env(ansible_home))
        shutil.rmtree(ansible_home["ANSIBLE_HOME"], ignore_errors=True)
        if not installed:
            log(f"galaxy did not answer: installing the {ANSIBLE_SPEC!r} package, which bundles it")
            if not _run([*pip, ANSIBLE_SPEC], log, timeout=INSTALL_TIMEOUT_S, env=env):
                raise CommandFailed("could not install community.postgresql")
    if collection_version(venv) is None:
        raise CommandFailed(f"community.postgresql is not in {venv} after installing it")
    return {
        "venv": str(venv),
        "pyinfra": _version([str(venv / "bin" / "pyinfra"), "--version"]),
        "ansible_core": _version([str(venv / "bin" / "ansible"), "--version"]),
        "community_postgresql": collection_version(venv),
        "collection_source": (
            "ansible-galaxy" if collection_version(venv, galaxy_only=True) else "pip ansible"
        ),
    }


def _version(argv: list[str]) -> str | None:
    """The first version number a ``--version`` prints."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"\d+\.\d+(\.\d+)?", out.stdout + out.stderr)
    return found.group(0) if found else None


# -- the peers -----------------------------------------------------------------------------------


class Peers:
    """pyinfra and Ansible runs of the bundle, and the drops of what they made."""

    def __init__(self, venv: Path, work: Path, pg_url: str) -> None:
        parts = urlsplit(pg_url)
        self.pg_url = pg_url
        self.pg = {
            "host": parts.hostname or "127.0.0.1",
            "port": str(parts.port or 5432),
            "user": unquote(parts.username or "postgres"),
            "password": unquote(parts.password or ""),
        }
        self.venv = venv
        self.work = work
        self.deploy_file = work / "bundle_deploy.py"
        self.deploy_file.write_text(PYINFRA_DEPLOY)
        self.playbook = work / "bundle.yml"
        self.playbook.write_text(ANSIBLE_PLAYBOOK)
        (work / "ansible-home").mkdir()
        (work / "ansible-tmp").mkdir()
        self.ansible_env = child_env(
            {
                "ANSIBLE_HOME": str(work / "ansible-home"),
                "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
                "ANSIBLE_REMOTE_TEMP": str(work / "ansible-tmp"),
                "ANSIBLE_COLLECTIONS_PATH": str(venv / "collections"),
                "ANSIBLE_RETRY_FILES_ENABLED": "false",
                "ANSIBLE_LOCALHOST_WARNING": "false",
                "ANSIBLE_NOCOLOR": "1",
            }
        )
        self.passwords: dict[str, str] = {}
        self.made: set[str] = set()
        self.last_output = ""

    def _password(self, name: str) -> str:
        return self.passwords.setdefault(name, secrets.token_urlsafe(24))

    def pyinfra(self, name: str) -> float:
        self.made.add(name)  # before: a run that fails half-way is dropped too
        env = child_env(
            {
                "BENCH_NAME": name,
                "BENCH_PASSWORD": self._password(name),
                "BENCH_PG_HOST": self.pg["host"],
                "BENCH_PG_PORT": self.pg["port"],
                "BENCH_PG_USER": self.pg["user"],
                "BENCH_PG_PASSWORD": self.pg["password"],
            }
        )
        argv = [str(self.venv / "bin" / "pyinfra"), "@local", str(self.deploy_file), "-y"]
        return run_timed(argv, env)

    def ansible(self, name: str) -> float:
        self.made.add(name)
        extra = {
            "bench_name": name,
            "bench_password": self._password(name),
            "pg_host": self.pg["host"],
            "pg_port": int(self.pg["port"]),
            "pg_user": self.pg["user"],
            "pg_password": self.pg["password"],
            "ansible_python_interpreter": str(self.venv / "bin" / "python"),
        }
        argv = [
            str(self.venv / "bin" / "ansible-playbook"),
            "-i",
            "localhost,",
            str(self.playbook),
            "-e",
            json.dumps(extra),
        ]
        res, elapsed = run_child(argv, env=self.ansible_env, timeout=300)
        self.last_output = res.stdout
        if res.returncode != 0:
            tail = (res.stdout.strip() + "\n" + res.stderr.strip())[-1500:]
            raise CommandFailed(f"ansible-playbook exited {res.returncode}: {masked(tail)}")
        return elapsed

    def ansible_changed(self) -> int | None:
        """``changed=N`` from the last playbook's recap."""
        found = re.search(r"\bchanged=(\d+)", self.last_output)
        return int(found.group(1)) if found else None

    def check(self, role: str, database: str | None = None) -> list[str]:
        """What is wrong with the bundle (``role``, and ``database``, by default named like
        it) on the server; empty when it is all there."""
        database = database or role
        with psycopg.connect(self.pg_url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT r.rolcanlogin, o.rolname,"
                # one privilege a call: a list is true when any one of them is held
                " has_database_privilege(r.oid, d.oid, 'CONNECT')"
                " AND has_database_privilege(r.oid, d.oid, 'CREATE')"
                " AND has_database_privilege(r.oid, d.oid, 'TEMP')"
                " FROM pg_roles r LEFT JOIN pg_database d ON d.datname = %s"
                " LEFT JOIN pg_roles o ON o.oid = d.datdba WHERE r.rolname = %s",
                (database, role),
            ).fetchone()
        if row is None:
            return ["no role"]
        login, owner, privileged = row
        wrong = [] if login else ["the role cannot log in"]
        if owner != role:
            wrong.append(f"the database is owned by {owner}" if owner else "no database")
        # The role's effective privileges: the owner holds them all whether or not a GRANT was
        # sent (stackyard's postgres.grant reads them first and sends none; the peers send one).
        if owner and not privileged:
            wrong.append("CONNECT, CREATE, TEMP not held")
        return wrong

    def check_stackyard(self, workload: str, env: str) -> list[str]:
        """``check`` of the role and database stackyard made for ``workload`` in ``env``,
        found by their ownership labels (``stackyard:<installation>:<env>:<address>``)."""
        like = f"stackyard:%:{env}:postgres.%#{workload}.db/%"
        with psycopg.connect(self.pg_url, autocommit=True, connect_timeout=5) as conn:
            roles = conn.execute(
                "SELECT rolname FROM pg_authid"
                " WHERE coalesce(shobj_description(oid, 'pg_authid'), '') LIKE %s",
                (like,),
            ).fetchall()
            databases = conn.execute(
                "SELECT datname FROM pg_database"
                " WHERE coalesce(shobj_description(oid, 'pg_database'), '') LIKE %s",
                (like,),
            ).fetchall()
        if len(roles) != 1 or len(databases) != 1:
            return [f"{len(roles)} labelled role(s), {len(databases)} labelled database(s)"]
        return self.check(roles[0][0], databases[0][0])

    def drop(self, names: set[str]) -> list[str]:
        """Drop the databases and roles ``names`` (those that exist); what could not be."""
        failed = []
        with psycopg.connect(self.pg_url, autocommit=True, connect_timeout=5) as conn:
            for name in sorted(names):
                try:
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
                    self.made.discard(name)
                except psycopg.Error as exc:
                    failed.append(f"{name}: {masked(str(exc))}")
        return failed


# -- the bench -----------------------------------------------------------------------------------


def bench(args: argparse.Namespace, log: Log) -> dict[str, Any]:
    tools = args.tools
    machine = machine_info(args.pg_url)
    if any(t in PEERS for t in tools):
        machine["peers"] = ensure_venv(args.venv, log, reinstall=args.reinstall)
        log(f"peers: {machine['peers']}")
    times: dict[str, dict[str, list[float]]] = {t: {"create": [], "nochange": []} for t in tools}
    checks: dict[str, Any] = {
        "bundle_missing": [],  # creates that did not make the whole bundle (none expected)
        "ansible_nochange_changed": [],  # changed=N of each no-change playbook (0 expected)
        # pyinfra cannot compare a password, and has no privileges operation: its no-change
        # run still sends ALTER ROLE ... PASSWORD and the GRANT (as its own notice says).
        "pyinfra_nochange_writes": ["ALTER ROLE ... PASSWORD", "GRANT"],
    }
    machine["command_server"] = None
    floor: list[float] = []  # a bare CREATE DATABASE per timed round
    split: dict[str, list[float]] = {"create_database": [], "rest": []}
    ours = [t for t in tools if t in STACKYARD_MODES]
    tag = secrets.token_hex(2)
    work = Path(tempfile.mkdtemp(prefix="stackyard-bench-peers-"))
    peers = Peers(args.venv, work, args.pg_url)
    leftovers: dict[str, Any] = {}
    try:
        with temp_home("peers", log) as (home, home_leftovers):
            sy = Stackyard(home, log)
            try:
                machine["setup"] = sy.set_up(
                    pg_url=args.pg_url, redis_url=args.redis_url, env=bool(ours)
                )
                total = args.warmup + args.runs
                for i in range(total):
                    timed = i >= args.warmup
                    if i == args.warmup and "stackyard" in tools:
                        # Time a warm server only: the warm-up (or this poll) started it.
                        machine["command_server"] = sy.wait_for_server()
                    # Fresh names each round; the tools take turns going first, so that none
                    # always meets the server right after another's CREATE DATABASE.
                    order = tools[i % len(tools) :] + tools[: i % len(tools)]
                    names = {t: f"{NAME_PREFIX[t]}{i}{tag}" for t in tools}
                    took: dict[str, dict[str, float]] = {t: {} for t in tools}
                    for phase in ("create", "nochange"):
                        for tool in order:
                            name = names[tool]
                            if tool in STACKYARD_MODES:
                                elapsed = sy.deploy(name, STACKYARD_MODES[tool])
                            elif tool == "pyinfra":
                                elapsed = peers.pyinfra(name)
                            else:
                                elapsed = peers.ansible(name)
                                if phase == "nochange":
                                    checks["ansible_nochange_changed"].append(
                                        peers.ansible_changed()
                                    )
                            took[tool][phase] = elapsed
                            if timed:
                                times[tool][phase].append(elapsed)
                                if tool == "stackyard" and phase == "create":
                                    db = sy.database_seconds(PARENT)
                                    if db is not None:
                                        split["create_database"].append(db)
                                        split["rest"].append(elapsed - db)
                            if phase == "create":
                                wrong = (
                                    peers.check_stackyard(name, PARENT)
                                    if tool in STACKYARD_MODES
                                    else peers.check(name)
                                )
                                if wrong:
                                    checks["bundle_missing"].append({tool: wrong})
                                    log(f"{tool} did not make the bundle: {wrong}")
                    for tool in ours:
                        sy.remove(names[tool])
                    peers.drop({names[t] for t in tools if t in PEERS})
                    if timed:  # what every tool's create paid PostgreSQL itself, this round
                        floor.append(bare_create_database(args.pg_url, f"z{i}{tag}"))
                    log(
                        f"round {i + 1}/{total}"
                        + ("" if timed else " (warm-up, untimed)")
                        + ": "
                        + ", ".join(
                            f"{t} {took[t]['create']:.2f}/{took[t]['nochange']:.2f} s"
                            for t in tools
                        )
                    )
                if machine["command_server"] is not None:
                    end = sy.current_server()
                    machine["command_server"]["pid_end"] = end.get("pid") if end else None
                    machine["command_server"]["served_end"] = end.get("served") if end else None
            finally:
                sy.tear_down(home_leftovers)
        leftovers.update(home_leftovers)
    finally:
        leftovers["peer_objects_not_dropped"] = peers.drop(set(peers.made))
        shutil.rmtree(work, ignore_errors=True)
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["warmup"] = args.warmup
    result_tools = {t: {p: figures(v) for p, v in times[t].items()} for t in tools}
    result: dict[str, Any] = {"tools": result_tools}
    for tool, key in RATIO_KEYS.items():
        ratios: dict[str, dict[str, float | None]] = {"create": {}, "nochange": {}}
        if tool in tools:
            for phase, per_peer in ratios.items():
                mine = result_tools[tool][phase]["p50"]
                for peer in (t for t in tools if t in PEERS):
                    theirs = result_tools[peer][phase]["p50"]
                    per_peer[peer] = round(mine / theirs, 3) if mine and theirs else None
        result[key] = ratios
    # The part of every tool's create that is PostgreSQL's own: it varies with the machine's
    # disk more than anything the tools do, and moves the ratios with it.
    result["floor"] = {"create_database": figures(floor)}
    result["stackyard_create_split"] = {k: figures(v) for k, v in split.items()}
    return {
        **result,
        "checks": checks,
        "machine": machine,
        "leftovers": leftovers,
    }


def bare_create_database(pg_url: str, name: str) -> float:
    """Seconds of one ``CREATE DATABASE`` (template0, UTF8: what each tool's bundle makes),
    on its own connection; the database is dropped again (untimed)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        ident = sql.Identifier(name)
        started = time.perf_counter()
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(ident))
        took = time.perf_counter() - started
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(ident))
    return took


def _tools(text: str) -> tuple[str, ...]:
    tools = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in tools if t not in TOOLS]
    if unknown or not tools or len(set(tools)) != len(tools):
        raise argparse.ArgumentTypeError(f"a comma-separated subset of {', '.join(TOOLS)}")
    return tools


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--tools", type=_tools, default=TOOLS, help="default: all four")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the peers' venv")
    parser.add_argument("--reinstall", action="store_true", help="make the peers' venv anew")
    parser.add_argument("--install-only", action="store_true", help="prepare the venv, exit")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="dev's other binding")
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1, --warmup at least 0")
    if urlsplit(args.pg_url).hostname not in LOOPBACK:
        parser.error("--pg-url must be on this machine (127.0.0.1)")
    log = make_log("peers")
    terminate_on_sigterm()

    def run() -> int:
        if args.install_only:
            print(json.dumps(ensure_venv(args.venv, log, reinstall=args.reinstall)))
            return 0
        result = bench(args, log)
        print(json.dumps(result))
        left = result["leftovers"]
        bad = (
            leftover(left)
            or left.get("peer_objects_not_dropped")
            or result["checks"]["bundle_missing"]
        )
        return 1 if bad else 0

    return guarded(log, run)


if __name__ == "__main__":
    sys.exit(main())
