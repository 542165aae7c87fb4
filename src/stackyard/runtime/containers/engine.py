"""The container engine: the podman CLI, and the quirks this machine needs it run with.

Every podman command stackyard runs goes through an ``Engine``: the binary, the global flags
(``--runtime``, ``--cgroup-manager``) and the ``run`` flags (``--ulimit``) that make a
container start on this host. ``detect`` works them out once, by starting a container that
needs no image (``--rootfs`` of an empty folder running a command that does not exist): a
host where containers work answers "not found" (exit 127); one that needs a quirk fails
earlier, while setting up the container. The answer is cached in the home, keyed by the
podman version and the kernel, and each setting can be forced with an environment variable
(``STACKYARD_PODMAN_RUNTIME``, ``STACKYARD_PODMAN_CGROUP_MANAGER``, ``STACKYARD_PODMAN_ULIMITS``).

Failures of podman itself become ``WorkloadFailedError`` here, with podman's last line.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stackyard.errors import WorkloadFailedError

__all__ = [
    "DEFAULT_ULIMITS",
    "ENV_CGROUP_MANAGER",
    "ENV_RUNTIME",
    "ENV_ULIMITS",
    "Engine",
    "Overrides",
    "detect",
    "find_podman",
    "last_line",
    "probe",
]

ENV_RUNTIME = "STACKYARD_PODMAN_RUNTIME"
ENV_CGROUP_MANAGER = "STACKYARD_PODMAN_CGROUP_MANAGER"
ENV_ULIMITS = "STACKYARD_PODMAN_ULIMITS"
#: Limits a container otherwise inherits from podman; setting them needs CAP_SYS_RESOURCE
#: when they exceed the host's hard limits, which root in some sandboxes lacks.
DEFAULT_ULIMITS = ("nofile=1024:1024", "nproc=1024:1024")
#: The cache file under ``<home>/containers/``.
CACHE = "engine.json"
_PROBE_TIMEOUT = 60.0
_CMD_TIMEOUT = 120.0


@dataclass(frozen=True)
class Overrides:
    """What the operator forced; None leaves a setting to ``detect``."""

    runtime: str | None = None
    cgroup_manager: str | None = None
    ulimits: tuple[str, ...] | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Overrides:
        """Read the ``STACKYARD_PODMAN_*`` variables (``ULIMITS``: comma-separated, or
        ``none``)."""
        raw = environ.get(ENV_ULIMITS)
        ulimits: tuple[str, ...] | None = None
        if raw is not None:
            ulimits = (
                ()
                if raw.strip().lower() in ("", "none")
                else tuple(u.strip() for u in raw.split(",") if u.strip())
            )
        return cls(
            environ.get(ENV_RUNTIME) or None, environ.get(ENV_CGROUP_MANAGER) or None, ulimits
        )

    @property
    def any(self) -> bool:
        """Whether anything is forced."""
        return (
            self.runtime is not None or self.cgroup_manager is not None or self.ulimits is not None
        )


@dataclass(frozen=True)
class Engine:
    """podman, with the flags this host needs. ``quirks`` says which were applied and why."""

    podman: str
    version: str
    runtime: str | None = None
    cgroup_manager: str | None = None
    ulimits: tuple[str, ...] = ()
    init: bool = False
    rootless: bool = False
    quirks: tuple[str, ...] = field(default=())

    def cmd(self, *args: str) -> list[str]:
        """A podman command line with the global flags."""
        out = [self.podman]
        if self.runtime:
            out += ["--runtime", self.runtime]
        if self.cgroup_manager:
            out += ["--cgroup-manager", self.cgroup_manager]
        return [*out, *args]

    def run_flags(self) -> list[str]:
        """The ``podman run`` flags every container gets on this host."""
        out: list[str] = []
        for u in self.ulimits:
            out += ["--ulimit", u]
        if self.init:
            out.append("--init")
        return out

    def call(
        self, *args: str, check: bool = True, timeout: float = _CMD_TIMEOUT, what: str = ""
    ) -> subprocess.CompletedProcess[str]:
        """Run a podman command; a failure (when ``check``) raises ``WorkloadFailedError``."""
        argv = self.cmd(*args)
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env=_podman_env(),
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise WorkloadFailedError(
                f"podman {args[0]} did not finish in {timeout:g} s",
                workload=what,
                hint="Check 'podman info'; a stuck container engine needs a look by hand.",
            ) from exc
        except OSError as exc:
            raise WorkloadFailedError(
                f"Cannot run podman: {exc.strerror}", workload=what, hint="Install podman."
            ) from exc
        if check and done.returncode != 0:
            raise WorkloadFailedError(
                f"podman {args[0]} failed (exit {done.returncode}): {last_line(done.stderr)}",
                workload=what,
                hint="Run 'stackyard doctor' to see what this machine's podman can do.",
            )
        return done

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the cache)."""
        data = asdict(self)
        data["ulimits"] = list(self.ulimits)
        data["quirks"] = list(self.quirks)
        return data


def last_line(text: str) -> str:
    """The last non-empty line of podman's stderr, without its ``Error:`` prefix."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = lines[-1] if lines else "no message"
    return line.removeprefix("Error: ")[:400]


def _podman_env() -> dict[str, str]:
    """Podman's own environment: enough to find its helpers, nothing of ours."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
    }
    for key in ("HOME", "XDG_RUNTIME_DIR", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def find_podman() -> str | None:
    """The podman binary on PATH (or in /usr/bin), or None."""
    return shutil.which("podman") or (
        "/usr/bin/podman" if Path("/usr/bin/podman").is_file() else None
    )


def _version(podman: str) -> str | None:
    try:
        done = subprocess.run(
            [podman, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().rsplit(" ", 1)[-1] if done.returncode == 0 else None


def _candidates(overrides: Overrides) -> list[tuple[str | None, str | None, tuple[str, ...], str]]:
    """(runtime, cgroup manager, ulimits, why) to try, in order; forced values in all."""
    tries: list[tuple[str | None, str | None, tuple[str, ...], str]] = [
        (None, None, (), "podman's defaults"),
        (None, None, DEFAULT_ULIMITS, "explicit ulimits: root lacks CAP_SYS_RESOURCE"),
        ("runc", "cgroupfs", (), "runc with cgroupfs: crun refuses this cgroup layout"),
        (
            "runc",
            "cgroupfs",
            DEFAULT_ULIMITS,
            "runc with cgroupfs and explicit ulimits (crun refuses this cgroup layout, and "
            "root lacks CAP_SYS_RESOURCE)",
        ),
    ]
    out: list[tuple[str | None, str | None, tuple[str, ...], str]] = []
    for rt, cg, ul, why in tries:
        item = (
            overrides.runtime or rt,
            overrides.cgroup_manager or cg,
            overrides.ulimits if overrides.ulimits is not None else ul,
            why,
        )
        if item[:3] not in [o[:3] for o in out]:
            out.append(item)
    return out


def _works(engine: Engine, empty_root: Path) -> tuple[bool, str]:
    """Start a container from an empty rootfs running a missing command: podman says "not
    found" (127) only once the container itself was set up."""
    argv = engine.cmd(
        "run",
        "--rm",
        "--network",
        "none",
        *engine.run_flags(),
        "--rootfs",
        str(empty_root),
        "/stackyard-probe",
    )
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT,
            check=False,
            env=_podman_env(),
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if done.returncode == 127:
        return True, ""
    return False, last_line(done.stderr)


def detect(home: Path, environ: Mapping[str, str] | None = None, *, fresh: bool = False) -> Engine:
    """The engine for this host: from the cache in ``home`` when it matches the installed podman
    and the kernel, else probed (and cached). Raises ``WorkloadFailedError`` when podman is
    missing or no combination starts a container."""
    overrides = Overrides.from_environ(os.environ if environ is None else environ)
    podman = find_podman()
    if podman is None:
        raise WorkloadFailedError(
            "podman is not installed, so the 'containers' runtime cannot run here",
            workload="",
            hint="Install it (apt-get install podman runc), or use an environment type "
            "with runtime 'local'. 'stackyard doctor' says what this machine can run.",
        )
    version = _version(podman) or "unknown"
    folder = home / "containers"
    cache = folder / CACHE
    key = {
        "podman": podman,
        "version": version,
        "kernel": platform.release(),
        "overrides": asdict(overrides),
    }
    if not fresh:
        try:
            data = json.loads(cache.read_text())
            if data.get("key") == json.loads(json.dumps(key)):
                e = data["engine"]
                return Engine(
                    podman=e["podman"],
                    version=e["version"],
                    runtime=e["runtime"],
                    cgroup_manager=e["cgroup_manager"],
                    ulimits=tuple(e["ulimits"]),
                    init=bool(e["init"]),
                    rootless=bool(e["rootless"]),
                    quirks=tuple(e["quirks"]),
                )
        except (OSError, ValueError, KeyError, TypeError):
            pass
    engine = probe(podman, version, overrides, folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = cache.with_name(f".{CACHE}.{os.getpid()}")
    tmp.write_text(json.dumps({"key": key, "engine": engine.to_json()}))
    tmp.replace(cache)
    return engine


def probe(podman: str, version: str, overrides: Overrides, folder: Path) -> Engine:
    """Try each combination of quirks until a container starts; raise if none does."""
    empty = folder / "probe-root"
    empty.mkdir(mode=0o700, parents=True, exist_ok=True)
    init = shutil.which("catatonit") is not None or Path("/usr/libexec/podman/catatonit").exists()
    failures: list[str] = []
    for runtime, cgroups, ulimits, why in _candidates(overrides):
        # Without --init: catatonit would answer for the missing command with its own error.
        engine = Engine(podman, version, runtime, cgroups, ulimits, rootless=os.geteuid() != 0)
        ok, err = _works(engine, empty)
        if ok:
            quirks = [] if runtime is None and cgroups is None and not ulimits else [why]
            if overrides.any:
                quirks.append("forced by STACKYARD_PODMAN_* variables")
            return Engine(
                podman,
                version,
                runtime,
                cgroups,
                ulimits,
                init=init,
                rootless=engine.rootless,
                quirks=tuple(quirks),
            )
        failures.append(f"{why}: {err}")
    raise WorkloadFailedError(
        "podman cannot start a container on this machine: " + "; ".join(failures[-2:]),
        workload="",
        hint=f"Set {ENV_RUNTIME}, {ENV_CGROUP_MANAGER} or {ENV_ULIMITS} to what works here, "
        "and run 'stackyard doctor'.",
    )
