"""Reach: the loopback endpoints a workload's resources name, made reachable from its containers.

``endpoints`` finds them in the resources' outputs (a ``host``/``hostname`` on loopback with a
``port``, or a URL whose host is on loopback and which names its port); ``rewrite`` points them
at the environment's relay (``containers.relay``) on the network's gateway address; ``Reach``
runs that relay, one per environment, and keeps which workload needs which endpoint and the
relay port each endpoint got (``<root>/.relay/routes.json``), so that a redeploy renders the
same variables and a relay started again (after a crash or a reboot) listens where it did.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import socket
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

import stackyard
from stackyard.errors import WorkloadFailedError
from stackyard.host import supervise
from stackyard.model.values import Secret
from stackyard.runtime.containers.relay import CONTROL

__all__ = ["FOLDER", "Reach", "endpoints", "is_loopback", "rewrite"]

#: The relay's folder under the runtime's root (not a workload name: those never start with a dot).
FOLDER = ".relay"
_HOST_KEYS = ("host", "hostname")
_START_TIMEOUT = 15.0
_REPLY_TIMEOUT = 15.0


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback (``localhost``, 127.0.0.0/8, ``::1``)."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return name == "localhost"
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _target(host: str, port: int) -> str:
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 65536 else None
    if isinstance(value, str) and value.isdigit():
        return _port(int(value))
    return None


def _url(value: str) -> tuple[SplitResult, str] | None:
    """A URL on loopback with an explicit port, and its target; else None."""
    if "://" not in value:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or port is None or not is_loopback(parts.hostname):
        return None
    return parts, _target(parts.hostname, port)


def _plain(value: Any) -> Any:
    return _plain(value.value) if isinstance(value, Secret) else value


def endpoints(outputs: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Every loopback endpoint (``host:port``) the resources' outputs name."""
    found: set[str] = set()
    for outs in outputs.values():
        port = _port(_plain(outs.get("port")))
        for key in _HOST_KEYS:
            host = _plain(outs.get(key))
            if isinstance(host, str) and port is not None and is_loopback(host):
                found.add(_target(host, port))
        for value in outs.values():
            plain = _plain(value)
            if isinstance(plain, str) and (hit := _url(plain)) is not None:
                found.add(hit[1])
    return found


def rewrite(
    outputs: Mapping[str, Mapping[str, Any]], gateway: str, ports: Mapping[str, int]
) -> dict[str, dict[str, Any]]:
    """The outputs with every loopback endpoint in ``ports`` pointed at ``gateway:<its port>``;
    everything else (and a secret's wrapping) unchanged."""
    out: dict[str, dict[str, Any]] = {}
    for name, outs in outputs.items():
        new = dict(outs)
        port_value = _plain(outs.get("port"))
        port = _port(port_value)
        relayed: int | None = None
        for key in _HOST_KEYS:
            host = _plain(outs.get(key))
            if isinstance(host, str) and port is not None and is_loopback(host):
                relayed = ports.get(_target(host, port))
                if relayed is not None:
                    new[key] = _wrap(outs[key], gateway)
        if relayed is not None:
            new["port"] = _wrap(
                outs["port"], str(relayed) if isinstance(port_value, str) else relayed
            )
        for key, value in outs.items():
            plain = _plain(value)
            if key in _HOST_KEYS or not isinstance(plain, str):
                continue
            hit = _url(plain)
            if hit is None or hit[1] not in ports:
                continue
            parts, target = hit
            userinfo = parts.netloc.rpartition("@")[0]
            netloc = (f"{userinfo}@" if userinfo else "") + f"{gateway}:{ports[target]}"
            new[key] = _wrap(value, parts._replace(netloc=netloc).geturl())
        out[name] = new
    return out


def _wrap(original: Any, value: Any) -> Any:
    return Secret(value) if isinstance(original, Secret) else value


class Reach:
    """The environment's relay: started on demand, told every route its workloads need.

    Callers hold the runtime's lock (``LocalRuntime._locked``): the routes file and the relay
    are changed by one process at a time.
    """

    def __init__(self, root: Path) -> None:
        """``root`` is the runtime's root (``<home>/envs/<env>/containers``)."""
        self.folder = Path(root) / FOLDER

    @property
    def pidfile(self) -> Path:
        """The relay's pidfile."""
        return self.folder / "relay.pid"

    @property
    def logfile(self) -> Path:
        """The relay's log (its errors: it logs no connection)."""
        return self.folder / "relay.log"

    def routes(
        self, workload: str, needed: set[str], *, gateway: str, subnet: str
    ) -> dict[str, int]:
        """Record that ``workload`` needs ``needed`` endpoints, bring the relay in line with
        every workload's needs, and return each needed endpoint's relay port.

        Raises ``WorkloadFailedError`` when the relay cannot start or cannot listen for one of
        ``needed``. Safe to repeat: the same needs give the same ports while they are free.
        """
        state = self._load()
        if needed:
            state["workloads"][workload] = sorted(needed)
        else:
            state["workloads"].pop(workload, None)
        state["gateway"], state["subnet"] = gateway, subnet
        reply = self._apply(state)
        missing = sorted(t for t in needed if t not in reply["ports"])
        if missing:
            why = "; ".join(f"{t}: {reply['errors'].get(t, 'not bound')}" for t in missing)
            raise WorkloadFailedError(
                f"The relay of workload '{workload}' cannot listen on {gateway}: {why}",
                workload=workload,
                hint=f"See {self.logfile}.",
            )
        return {t: int(reply["ports"][t]) for t in needed}

    def forget(self, workload: str) -> None:
        """``workload`` no longer needs its endpoints: their listeners close (if no other
        workload needs them). A stopped relay stays stopped."""
        state = self._load()
        if state["workloads"].pop(workload, None) is None:
            return
        if supervise.running(self.pidfile) is not None and state["gateway"]:
            self._apply(state)
        else:
            self._save(state)

    def stop(self) -> None:
        """Stop the relay and remove its folder (a destroy)."""
        supervise.stop(self.pidfile, timeout=5.0)
        if self.folder.exists():
            shutil.rmtree(self.folder)

    # -- internals -----------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads((self.folder / "routes.json").read_text())
            if isinstance(data, dict) and isinstance(data.get("workloads"), dict):
                data.setdefault("ports", {})
                data.setdefault("gateway", "")
                data.setdefault("subnet", "")
                return data
        except (OSError, ValueError):
            pass
        return {"gateway": "", "subnet": "", "ports": {}, "workloads": {}}

    def _save(self, state: dict[str, Any]) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.folder / f".routes.{os.getpid()}"
        tmp.write_text(json.dumps(state, sort_keys=True))
        tmp.replace(self.folder / "routes.json")

    def _apply(self, state: dict[str, Any]) -> dict[str, Any]:
        """Send every workload's routes to the relay (started first if it is not running);
        remember the ports it answered with."""
        targets = sorted({t for ts in state["workloads"].values() for t in ts})
        request = {
            "gateway": state["gateway"],
            "subnet": state["subnet"],
            "routes": [{"target": t, "port": int(state["ports"].get(t, 0))} for t in targets],
        }
        self._ensure_running()
        reply = self._ask(request)
        state["ports"].update({t: int(p) for t, p in reply.get("ports", {}).items()})
        self._save(state)
        return {"ports": reply.get("ports", {}), "errors": reply.get("errors", {})}

    def _ensure_running(self) -> None:
        if supervise.running(self.pidfile) is not None:
            return
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.folder / CONTROL).unlink(missing_ok=True)
        argv = [sys.executable, "-P", "-m", "stackyard.runtime.containers.relay", str(self.folder)]
        user = supervise.server_user() if os.geteuid() == 0 else None
        if user is not None:
            argv += [str(user.uid), str(user.gid)]
        env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8"}
        package_parent = Path(stackyard.__file__).resolve().parent.parent
        if package_parent.name not in ("site-packages", "dist-packages"):
            env["PYTHONPATH"] = str(package_parent)
        proc = supervise.launch(
            argv,
            pidfile=self.pidfile,
            logfile=self.logfile,
            cwd=self.folder,
            env=env,
            user=None,  # it drops to ``user`` itself, once its control socket is made
        )
        if not supervise.wait_ready(proc, self._answers, timeout=_START_TIMEOUT):
            raise WorkloadFailedError(
                "The environment's relay (containers reaching loopback servers) did not start: "
                + (supervise.log_tail(self.logfile) or "no message"),
                workload="",
                hint=f"See {self.logfile}.",
            )

    @contextlib.contextmanager
    def _connected(self) -> Iterator[socket.socket]:
        """A connection to the control socket, by a short path through ``/proc/self/fd``
        (the folder's own path may be longer than a socket address can be)."""
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(_REPLY_TIMEOUT)
                s.connect(f"/proc/self/fd/{fd}/{CONTROL}")
                yield s
        finally:
            os.close(fd)

    def _answers(self) -> bool:
        if not (self.folder / CONTROL).exists():
            return False
        try:
            with self._connected():
                return True
        except OSError:
            return False

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with contextlib.ExitStack() as stack:
            try:
                s = stack.enter_context(self._connected())
                s.sendall(json.dumps(request).encode() + b"\n")
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                reply = json.loads(data)
            except (OSError, ValueError) as exc:
                raise WorkloadFailedError(
                    f"The environment's relay did not answer: {exc}",
                    workload="",
                    hint=f"See {self.logfile}; the next deploy starts it again.",
                ) from exc
        if not isinstance(reply, dict):
            return {"ports": {}, "errors": {}}
        with contextlib.suppress(KeyError):
            if "request" in reply["errors"]:
                raise WorkloadFailedError(
                    f"The environment's relay refused its routes: {reply['errors']['request']}",
                    workload="",
                    hint=f"See {self.logfile}.",
                )
        return reply
