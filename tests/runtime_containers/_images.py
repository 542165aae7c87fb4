"""Images for the containers runtime's tests, built locally (no registry is reachable):
``busybox`` from Debian's busybox-static, imported as ``localhost/busybox:latest``, and an app
image with a real client stack: a Debian rootfs made by debootstrap from Debian's packages
(python3 with psycopg2, redis, pika, pymysql and boto3), cached as a tarball under
``~/.cache/stackyard-test-images`` keyed by the suite and the package list."""

from __future__ import annotations

import hashlib
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


#: The app image's Debian packages (the client stack); the cache key includes them.
APP_PACKAGES = (
    "python3",
    "python3-psycopg2",
    "python3-redis",
    "python3-pika",
    "python3-pymysql",
    "python3-boto3",
)
APP_SUITE = "bookworm"
APP_MIRROR = "http://deb.debian.org/debian"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stackyard-test-images"


def app_key() -> str:
    """12 hex of what the rootfs is made of: suite, mirror, architecture and packages."""
    raw = "\0".join([APP_SUITE, APP_MIRROR, os.uname().machine, *sorted(APP_PACKAGES)])
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def app_tarball() -> Path:
    """The cached rootfs tarball, made by debootstrap when missing (several minutes cold)."""
    tar = CACHE / f"debian-{APP_SUITE}-app-{app_key()}.tar"
    if tar.is_file():
        return tar
    debootstrap = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").exists() else None
    )
    if debootstrap is None:
        if os.environ.get("STACKYARD_REQUIRE_SERVICES") == "1":
            pytest.fail("debootstrap is required (STACKYARD_REQUIRE_SERVICES=1)")
        pytest.skip("debootstrap is not installed (apt-get install debootstrap)")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix=".build-") as tmp:
        root = Path(tmp) / "root"
        done = subprocess.run(
            [
                debootstrap,
                "--variant=minbase",
                f"--include={','.join(APP_PACKAGES)}",
                APP_SUITE,
                str(root),
                APP_MIRROR,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise RuntimeError(f"debootstrap failed (exit {done.returncode}):\n{tail}")
        # Downloaded packages and apt lists are not part of the image.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / junk).glob("*"):
                if item.is_file():
                    item.unlink()
        partial = Path(tmp) / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."],
            check=True,
            capture_output=True,
        )
        partial.replace(tar)
    return tar


def app_image() -> str:
    """``localhost/stackyard-test-app:<key>``: the cached Debian rootfs imported once."""
    exe = podman()
    name = f"localhost/stackyard-test-app:{app_key()}"
    if subprocess.run([exe, "image", "exists", name], check=False).returncode == 0:
        return name
    tar = app_tarball()
    subprocess.run(
        [exe, "import", "-q", "--change", "CMD=/usr/bin/python3", str(tar), name],
        check=True,
        capture_output=True,
    )
    return name


if __name__ == "__main__":  # .ci/run warms the cache: python3 tests/runtime_containers/_images.py
    print(app_tarball())
