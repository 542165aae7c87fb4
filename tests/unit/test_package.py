"""Component packaging: reproducible builds, what goes in, refusals, and safe unpacking."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import sys
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from stackyard.canonical import canonical_bytes, sha256_digest
from stackyard.components import package
from stackyard.components.package import (
    LAYER_MEDIA_TYPE,
    MAX_FILE_BYTES,
    MAX_FILES,
    Build,
    build,
    pack,
    unpack,
    write,
)
from stackyard.errors import InvalidInputError

pytestmark = pytest.mark.unit

LIBRARY = Path(package.__file__).resolve().parents[1] / "library"
SOURCE = LIBRARY / "postgres-database"
EXPECTED_FILES = ("README.md", "component.yaml", "tests/basic.yaml")


@pytest.fixture
def component(tmp_path: Path) -> Path:
    dest = tmp_path / "src" / "postgres-database"
    shutil.copytree(SOURCE, dest)
    return dest


def summaries(exc: pytest.ExceptionInfo[InvalidInputError]) -> list[str]:
    return [d.summary for d in exc.value.diagnostics]


# --- reproducibility --------------------------------------------------------------------


def test_build_twice_gives_the_same_bytes(component: Path) -> None:
    first, second = build(component), build(component)
    assert first.archive == second.archive
    assert first.digest == second.digest == sha256_digest(first.archive)
    assert first.digest.startswith("sha256:") and len(first.digest) == 7 + 64
    assert first.files == EXPECTED_FILES
    assert first.media_type == LAYER_MEDIA_TYPE


def test_same_digest_from_a_copy_with_other_order_mtimes_modes_and_cwd(
    component: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = build(component)
    other = tmp_path / "elsewhere" / "deep" / "copy"
    (other / "tests").mkdir(parents=True)
    # Created in reverse order, with other mtimes and permissions.
    for i, rel in enumerate(reversed(EXPECTED_FILES)):
        target = other / rel
        target.write_bytes((component / rel).read_bytes())
        os.utime(target, (1_000_000 + i * 7777, 2_000_000_000 - i * 99))
        target.chmod(0o600 if i % 2 else 0o664)
    (other / "tests").chmod(0o700)
    os.utime(other, (5, 5))
    monkeypatch.chdir(other / "tests")
    copied = build(Path("..").resolve())
    assert copied.digest == reference.digest
    assert copied.archive == reference.archive
    assert build(Path("..")).digest == reference.digest  # a relative path too


def test_archive_metadata_is_fixed(component: Path) -> None:
    result = build(component)
    raw = result.archive
    assert raw[:2] == b"\x1f\x8b"
    assert raw[4:8] == b"\0\0\0\0", "gzip mtime must be 0"
    assert raw[3] & 0x08 == 0, "no file name in the gzip header"
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == list(EXPECTED_FILES)
    for m in members:
        assert m.isreg()
        assert (m.mtime, m.mode, m.uid, m.gid, m.uname, m.gname) == (0, 0o644, 0, 0, "", "")


def test_manifest_json_is_canonical(component: Path) -> None:
    result = build(component)
    assert result.manifest.name == "postgres-database"
    assert result.manifest_json == canonical_bytes(result.manifest.raw, allow_nan=False)
    assert json.loads(result.manifest_json) == result.manifest.raw
    assert result.manifest_json == json.dumps(
        result.manifest.raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    assert result.config_digest == sha256_digest(result.manifest_json)


def test_pack_ignores_input_order() -> None:
    a = pack({"b.yaml": b"2", "component.yaml": b"1", "a/x.md": b"3"})
    b = pack({"a/x.md": b"3", "component.yaml": b"1", "b.yaml": b"2"})
    assert a == b


# --- what goes in -----------------------------------------------------------------------


def test_content_selection(component: Path) -> None:
    (component / "templates").mkdir()
    (component / "templates" / "init.sql").write_text("select 1;\n")
    (component / "policy.rego").write_text("package stackyard\n")
    (component / "values.json").write_text("{}\n")
    (component / "notes.txt").write_text("n\n")
    (component / "config.j2").write_text("{{ x }}\n")
    (component / "x.tmpl").write_text("t\n")
    (component / "extra.yml").write_text("a: 1\n")
    (component / "tests" / "fixture.bin").write_bytes(b"\x00\x01")  # tests/** go in whole
    # Left out: other suffixes, dotfiles and dot-folders, __pycache__, *.pyc.
    (component / "build.sh").write_text("#!/bin/sh\n")
    (component / "binary.tar.gz").write_bytes(b"x")
    (component / ".DS_Store").write_bytes(b"x")
    (component / ".git").mkdir()
    (component / ".git" / "config").write_text("[core]\n")
    (component / "tests" / "__pycache__").mkdir()
    (component / "tests" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"x")
    (component / "tests" / "y.pyc").write_bytes(b"x")
    (component / "tests" / ".hidden.yaml").write_text("a: 1\n")

    result = build(component)
    assert result.files == (
        "README.md",
        "component.yaml",
        "config.j2",
        "extra.yml",
        "notes.txt",
        "policy.rego",
        "templates/init.sql",
        "tests/basic.yaml",
        "tests/fixture.bin",
        "values.json",
        "x.tmpl",
    )
    assert set(result.ignored) == {
        ".DS_Store",
        ".git",
        "binary.tar.gz",
        "build.sh",
        "tests/.hidden.yaml",
        "tests/__pycache__",
        "tests/y.pyc",
    }
    with tarfile.open(fileobj=io.BytesIO(result.archive), mode="r:gz") as tar:
        assert tar.getnames() == list(result.files)
        fh = tar.extractfile("templates/init.sql")
        assert fh is not None and fh.read() == b"select 1;\n"


# --- build refusals ---------------------------------------------------------------------


def _symlink_inside(c: Path) -> None:
    (c / "link.yaml").symlink_to(c / "component.yaml")


def _symlink_dir_outside(c: Path) -> None:
    outside = c.parent.parent / "outside"
    outside.mkdir()
    (outside / "secret.yaml").write_text("password: hunter2\n")
    (c / "templates").symlink_to(outside, target_is_directory=True)


def _symlink_readme(c: Path) -> None:
    (c / "README.md").rename(c / "real.md")
    (c / "README.md").symlink_to("real.md")


def _dangling_symlink_ignored_suffix(c: Path) -> None:
    (c / "tool.py").symlink_to("/etc/passwd")


def _fifo(c: Path) -> None:
    os.mkfifo(c / "tests" / "pipe.yaml")


def _fifo_manifest(c: Path) -> None:
    (c / "component.yaml").unlink()
    os.mkfifo(c / "component.yaml")


def _oversize_file(c: Path) -> None:
    (c / "tests" / "big.yaml").write_bytes(b"#" * (MAX_FILE_BYTES + 1))


def _too_big_in_total(c: Path) -> None:
    for i in range(11):
        (c / f"data{i:02}.json").write_bytes(b" " * MAX_FILE_BYTES)


def _too_many_files(c: Path) -> None:
    for i in range(MAX_FILES):
        (c / "tests" / f"case{i:04}.yaml").write_text("{}\n")


def _missing_readme(c: Path) -> None:
    (c / "README.md").unlink()


def _control_char_name(c: Path) -> None:
    (c / "evil\nname.yaml").write_text("a: 1\n")


def _backslash_name(c: Path) -> None:
    (c / "evil\\name.yaml").write_text("a: 1\n")


def _invalid_manifest(c: Path) -> None:
    (c / "component.yaml").write_text("apiVersion: stackyard.dev/v1\nkind: Component\n")


BUILD_REFUSALS = [
    ("symlink-inside", _symlink_inside, "Symbolic link refused", "links are refused"),
    ("symlinked-dir-outside", _symlink_dir_outside, "Symbolic link refused", "escapes"),
    ("symlinked-readme", _symlink_readme, "Symbolic link refused", "required file"),
    ("symlink-ignored-name", _dangling_symlink_ignored_suffix, "Symbolic link refused", "any"),
    ("fifo", _fifo, "Special file refused", "would hang a reader"),
    ("fifo-manifest", _fifo_manifest, "Special file refused", "never opened"),
    ("oversize-file", _oversize_file, "File too large", "1 MiB per file"),
    ("oversize-total", _too_big_in_total, "Component too large", "10 MiB in total"),
    ("too-many-files", _too_many_files, "Too many files", "1000 files"),
    ("missing-readme", _missing_readme, "README missing", "catalog shows it"),
    ("control-char", _control_char_name, "Unsafe file name", "newline in a name"),
    ("backslash", _backslash_name, "Unsafe file name", "Windows separator"),
    ("invalid-manifest", _invalid_manifest, "Missing field", "validation runs first"),
]


@pytest.mark.parametrize(
    ("setup", "summary"),
    [pytest.param(setup, summary, id=name) for name, setup, summary, _reason in BUILD_REFUSALS],
)
def test_build_refuses(
    component: Path, tmp_path: Path, setup: Callable[[Path], None], summary: str
) -> None:
    if setup in (_fifo, _fifo_manifest) and not hasattr(os, "mkfifo"):
        pytest.skip("no fifos on this platform")
    setup(component)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(InvalidInputError) as exc:
        build(component)
    assert summary in summaries(exc), summaries(exc)
    assert all(d.detail for d in exc.value.diagnostics)
    assert "Nothing was written" in (exc.value.hint or "")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_build_reports_every_problem_at_once(component: Path) -> None:
    _missing_readme(component)
    _symlink_inside(component)
    _oversize_file(component)
    with pytest.raises(InvalidInputError) as exc:
        build(component)
    assert {"README missing", "Symbolic link refused", "File too large"} <= set(summaries(exc))


def test_build_of_a_file_is_refused(component: Path) -> None:
    with pytest.raises(InvalidInputError) as exc:
        build(component / "component.yaml")
    assert summaries(exc) == ["Not a component folder"]


# --- write ------------------------------------------------------------------------------


def test_write_is_atomic_and_leaves_no_temp(component: Path, tmp_path: Path) -> None:
    result = build(component)
    out = tmp_path / "out" / "pg.tar.gz"
    out.parent.mkdir()
    out.write_bytes(b"old")
    write(result, out)
    assert out.read_bytes() == result.archive
    assert sorted(p.name for p in out.parent.iterdir()) == ["pg.tar.gz"]


# --- unpack -----------------------------------------------------------------------------


def _tar(*entries: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes = b"a: 1\n") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info, None


MANIFEST = _file("component.yaml")


def _gzip_bomb() -> bytes:
    """A valid tar header claiming a 1 KiB file, then 200 MiB of zeros; compressed in pieces."""
    header = _file("component.yaml", b"x" * 1024)[0].tobuf(tarfile.GNU_FORMAT)
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [comp.compress(header)]
    chunk = bytes(1024 * 1024)
    out.extend(comp.compress(chunk) for _ in range(200))
    out.append(comp.flush())
    return b"".join(out)


def _member_bomb() -> bytes:
    """A header stating 200 MiB, then 200 gzip members of 1 MiB of zeros each (multi-member)."""
    info = tarfile.TarInfo("tests/huge.yaml")
    info.size = 200 * 1024 * 1024
    head = MANIFEST[0].tobuf(tarfile.GNU_FORMAT) + MANIFEST[1].ljust(512, b"\0")
    zeros = gzip.compress(bytes(1024 * 1024), mtime=0)
    return gzip.compress(head + info.tobuf(tarfile.GNU_FORMAT), mtime=0) + zeros * 200


def _good() -> bytes:
    return pack({"component.yaml": b"a: 1\n", "README.md": b"# r\n", "tests/t.yaml": b"{}\n"})


UNPACK_REFUSALS: list[tuple[str, Callable[[], bytes], str, str]] = [
    (
        "dotdot",
        lambda: _tar(MANIFEST, _file("../escape.yaml")),
        "Unsafe path in archive",
        "zip-slip",
    ),
    (
        "dotdot-inner",
        lambda: _tar(MANIFEST, _file("tests/../../escape.yaml")),
        "Unsafe path in archive",
        "'..' anywhere",
    ),
    (
        "absolute",
        lambda: _tar(MANIFEST, _file("/etc/cron.d/evil")),
        "Unsafe path in archive",
        "absolute",
    ),
    (
        "symlink",
        lambda: _tar(MANIFEST, _special("tests", tarfile.SYMTYPE, "/etc")),
        "Link or special file in archive",
        "links redirect later writes",
    ),
    (
        "hardlink",
        lambda: _tar(MANIFEST, _special("x.yaml", tarfile.LNKTYPE, "/etc/passwd")),
        "Link or special file in archive",
        "hard links",
    ),
    (
        "device",
        lambda: _tar(MANIFEST, _special("dev.yaml", tarfile.CHRTYPE)),
        "Link or special file in archive",
        "devices",
    ),
    (
        "fifo",
        lambda: _tar(MANIFEST, _special("p.yaml", tarfile.FIFOTYPE)),
        "Link or special file in archive",
        "fifos",
    ),
    (
        "duplicate",
        lambda: _tar(MANIFEST, _file("a.yaml"), _file("a.yaml", b"b: 2\n")),
        "Duplicate entry",
        "last one wins silently otherwise",
    ),
    (
        "case-duplicate",
        lambda: _tar(MANIFEST, _file("README.md"), _file("readme.md")),
        "Duplicate entry",
        "clash on case-insensitive file systems",
    ),
    (
        "file-and-folder",
        lambda: _tar(MANIFEST, _file("tests"), _file("tests/a.yaml")),
        "Duplicate entry",
        "a file cannot also be a folder",
    ),
    (
        "oversized-member",
        lambda: _tar(MANIFEST, _file("big.yaml", b"x" * (MAX_FILE_BYTES + 1))),
        "File too large",
        "per-file limit",
    ),
    ("gzip-bomb", _gzip_bomb, "Archive too large", "decompression is bounded"),
    ("member-bomb", _member_bomb, "Archive too large", "headers are not trusted"),
    ("truncated-gzip", lambda: _good()[:-20], "Truncated archive", "cut download"),
    ("truncated-tar", lambda: _truncated_tar(2048), "Truncated archive", "gzip ok, tar cut"),
    (
        "truncated-tar-at-header",
        lambda: _truncated_tar(1024),
        "Truncated archive",
        "cut between members: no end-of-archive marker",
    ),
    ("not-gzip", lambda: b"PK\x03\x04 this is a zip", "Not a gzip archive", "wrong format"),
    ("corrupt-gzip", lambda: _corrupt(), "Corrupt archive", "CRC mismatch"),
    ("empty", lambda: b"", "Not a gzip archive", "nothing at all"),
    (
        "no-manifest",
        lambda: _tar(_file("README.md")),
        "Not a component archive",
        "a layer must hold component.yaml",
    ),
    (
        "control-char",
        lambda: _tar(MANIFEST, _file("a\x1bb.yaml")),
        "Unsafe path in archive",
        "terminal escapes",
    ),
    (
        "backslash",
        lambda: _tar(MANIFEST, _file("..\\..\\evil")),
        "Unsafe path in archive",
        "Windows traversal",
    ),
]


def _truncated_tar(keep: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(*MANIFEST[:1], io.BytesIO(MANIFEST[1]))
        info, data = _file("tests/a.yaml", b"y" * 5000)
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue()[:keep], mtime=0)


def _corrupt() -> bytes:
    good = bytearray(_good())
    good[-6] ^= 0xFF  # inside the CRC32 trailer
    return bytes(good)


@pytest.mark.parametrize(
    ("make", "summary"),
    [pytest.param(make, summary, id=name) for name, make, summary, _reason in UNPACK_REFUSALS],
)
def test_unpack_refuses_and_writes_nothing(
    tmp_path: Path, make: Callable[[], bytes], summary: str
) -> None:
    dest = tmp_path / "out" / "component"
    with pytest.raises(InvalidInputError) as exc:
        unpack(make(), dest)
    assert summaries(exc) == [summary], exc.value.diagnostics
    assert str(exc.value).startswith("Component archive refused")
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []
    assert not (tmp_path.parent / "escape.yaml").exists()


def test_unpack_round_trip(component: Path, tmp_path: Path) -> None:
    result = build(component)
    dest = tmp_path / "pulled" / "pg"
    assert unpack(result.archive, dest) == list(EXPECTED_FILES)
    for rel in EXPECTED_FILES:
        assert (dest / rel).read_bytes() == (component / rel).read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["pg"]  # no temp left
    assert build(dest).digest == result.digest


def test_unpack_into_an_empty_folder_but_not_a_full_one(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    assert unpack(_good(), dest) == ["README.md", "component.yaml", "tests/t.yaml"]
    with pytest.raises(InvalidInputError) as exc:
        unpack(_good(), dest)
    assert summaries(exc) == ["Destination not empty"]
    assert (dest / "component.yaml").read_bytes() == b"a: 1\n"


def test_unpack_limits_are_parameters(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as exc:
        unpack(_good(), tmp_path / "a", max_files=2)
    assert summaries(exc) == ["Too many files"]
    with pytest.raises(InvalidInputError) as exc:
        unpack(_good(), tmp_path / "b", max_bytes=8)
    assert summaries(exc) == ["Archive too large"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_unpack_ignores_archive_modes(tmp_path: Path) -> None:
    info, data = _file("component.yaml")
    info.mode = 0o4777
    dest = tmp_path / "d"
    unpack(_tar((info, data)), dest)
    assert (dest / "component.yaml").stat().st_mode & 0o7777 == 0o644


def test_build_is_a_frozen_value(component: Path) -> None:
    result = build(component)
    assert isinstance(result, Build)
    with pytest.raises(AttributeError):
        result.digest = "x"  # type: ignore[misc]


def test_tar_bytes_are_pinned() -> None:
    # The uncompressed tar is pinned (gzip output can differ between zlib builds, the tar
    # cannot). A change here changes every published digest: make it on purpose only.
    contents = {
        "component.yaml": b"a: 1\n",
        "tests/t.yaml": b"{}\n",
        "d/" + "x" * 120 + ".md": b"long\n",  # needs a PAX path record
        "é.md": b"u\n",  # non-ASCII: a PAX path record in UTF-8
    }
    tar = gzip.decompress(pack(contents))
    assert len(tar) == tarfile.RECORDSIZE
    assert (
        sha256_digest(tar)
        == "sha256:d289ca19f1c17a6337c03a0d3a72c95db9542e8b17061c6e729748c769753e67"
    )
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        assert t.getnames() == sorted(contents)
