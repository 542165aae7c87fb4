"""A real OCI distribution registry for tests: CNCF Distribution (Debian's ``docker-registry``).

``oci_registry`` is session-scoped: one ``docker-registry serve`` on a free loopback port,
storing into a temporary folder, stopped at the end of the session. It yields an
``OciRegistry`` whose ``ref`` is ``127.0.0.1:PORT/stackyard-test-<random>`` (what
``--registry`` takes, with ``--plain-http``) and whose ``root`` is the storage folder, so tests
can reach behind the registry's back (e.g. to corrupt a blob).

When the binary is missing the fixture skips, or fails under ``STACKYARD_REQUIRE_SERVICES=1``
(``require_or_skip``).

Use it from a test module with ``from _oci_registry import oci_registry  # noqa: F401``.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from _services import require_or_skip

__all__ = ["OciRegistry", "oci_registry"]

BINARY = "/usr/bin/docker-registry"
START_TIMEOUT = 15.0


@dataclass(frozen=True)
class OciRegistry:
    """A running registry: ``address`` (HOST:PORT), ``namespace``, storage ``root``."""

    address: str
    namespace: str
    root: Path

    @property
    def ref(self) -> str:
        """``HOST:PORT/NAMESPACE``, the form ``--registry`` takes."""
        return f"{self.address}/{self.namespace}"

    @property
    def url(self) -> str:
        """The registry's base URL (plain HTTP)."""
        return f"http://{self.address}"

    def blob_file(self, digest: str) -> Path:
        """Where Distribution's filesystem driver stores blob ``digest``."""
        hexdigest = digest.removeprefix("sha256:")
        return self.root / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistry]:
    """A docker-registry on loopback for the whole session (plain HTTP, no auth)."""
    binary = shutil.which("docker-registry") or BINARY
    if not Path(binary).exists():
        require_or_skip("docker-registry is not installed (apt-get install docker-registry)")
    base = tmp_path_factory.mktemp("oci-registry")
    root = base / "storage"
    root.mkdir()
    config = base / "config.yml"
    log_path = base / "registry.log"
    for _attempt in range(3):  # a free port can be taken between probe and bind: retry
        port = _free_port()
        config.write_text(
            "version: 0.1\n"
            "log: {level: error, accesslog: {disabled: true}}\n"
            f"storage: {{filesystem: {{rootdirectory: {root}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: 127.0.0.1:{port}, secret: {secrets.token_hex(16)}}}\n"
        )
        with log_path.open("wb") as log:
            proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while proc.poll() is None and time.monotonic() < deadline:
                if _answers(f"http://127.0.0.1:{port}/v2/"):
                    break
                time.sleep(0.05)
            else:
                _stop(proc)
                continue
            yield OciRegistry(f"127.0.0.1:{port}", f"stackyard-test-{secrets.token_hex(4)}", root)
            return
        finally:
            _stop(proc)
    tail = log_path.read_text(errors="replace")[-500:] if log_path.exists() else ""
    require_or_skip(f"docker-registry did not start: {tail}")
