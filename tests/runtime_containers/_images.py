"""Images for the containers runtime's tests, built locally (no registry is reachable):
``busybox`` from Debian's busybox-static, imported as ``localhost/busybox:latest``."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

BUSYBOX = "localhost/busybox:latest"


def podman() -> str:
    """The podman binary; skips (fails under STACKYARD_REQUIRE_SERVICES=1) when it is absent."""
    found = shutil.which("podman")
    if found is None:
        if os.environ.get("STACKYARD_REQUIRE_SERVICES") == "1":
            pytest.fail("podman is required (STACKYARD_REQUIRE_SERVICES=1): apt-get install podman")
        pytest.skip("podman is not installed (apt-get install podman runc busybox-static)")
    return found


def busybox_image() -> str:
    """``localhost/busybox:latest``: /bin/busybox with a link per applet, and an nsswitch.conf
    (a static glibc busybox resolves names only with one). Imported once per machine."""
    exe = podman()
    if subprocess.run([exe, "image", "exists", BUSYBOX], check=False).returncode == 0:
        return BUSYBOX
    busybox = Path("/bin/busybox")
    if not busybox.is_file():
        pytest.skip("no /bin/busybox (apt-get install busybox-static)")
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "busybox.tar"
        with tarfile.open(tar, "w") as out:

            def add(name: str, data: bytes = b"", mode: int = 0o644, link: str = "") -> None:
                info = tarfile.TarInfo(name)
                info.mode = mode
                if link:
                    info.type, info.linkname = tarfile.SYMTYPE, link
                    out.addfile(info)
                    return
                info.size = len(data)
                import io

                out.addfile(info, io.BytesIO(data))

            for d in ("bin", "etc", "tmp", "root", "data"):
                info = tarfile.TarInfo(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
                out.addfile(info)
            add("bin/busybox", busybox.read_bytes(), 0o755)
            for applet in applets:
                if applet != "busybox":
                    add(f"bin/{applet}", link="busybox")
            add("etc/nsswitch.conf", b"hosts: files dns\n")
            add("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
            add("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        subprocess.run(
            [exe, "import", "-q", "--change", "CMD=/bin/sh", str(tar), BUSYBOX],
            check=True,
            capture_output=True,
        )
    return BUSYBOX
