"""Component packages: building a reproducible archive from a folder, and unpacking one safely.

A build is a gzip-compressed tar (``LAYER_MEDIA_TYPE``) of the files listed by ``build``.
The same folder contents give the same bytes, whatever the file-system order, mtimes,
permissions, owner, umask or current directory: entries are sorted by path, carry no
directory entries, and have fixed metadata (``ENTRY_MTIME``, uid/gid 0, empty owner names,
mode 0644); the gzip header has mtime 0, no file name and a fixed compression level.
The format and limits are described in ``docs/components-packaging.md``.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import tarfile
import tempfile
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from stackyard.canonical import canonical_bytes, sha256_digest
from stackyard.diagnostics import Diagnostic, Severity, error, has_errors
from stackyard.errors import InvalidInputError
from stackyard.model.component import MANIFEST_FILE, ComponentManifest, validate_component
from stackyard.model.source import parse_yaml

LAYER_MEDIA_TYPE = "application/vnd.stackyard.component.layer.v1.tar+gzip"
README_FILE = "README.md"
TESTS_DIR = "tests"

#: Files outside ``tests/`` are packaged only when their suffix is one of these (template
#: and documentation files). Anything else (scripts, binaries, build output) is left out.
TEMPLATE_SUFFIXES = frozenset(
    {".yaml", ".yml", ".json", ".tmpl", ".j2", ".md", ".txt", ".sql", ".rego"}
)
#: Never packaged, wherever they are: editor, VCS and Python byproducts.
EXCLUDED_DIRS = frozenset({"__pycache__"})
EXCLUDED_SUFFIXES = frozenset({".pyc"})

MAX_FILES = 1_000
MAX_FILE_BYTES = 1024 * 1024  # 1 MiB, any single file
MAX_TOTAL_BYTES = 10 * 1024 * 1024  # 10 MiB, all files, uncompressed
MAX_PATH_CHARS = 512

ENTRY_MTIME = 0  # 1970-01-01T00:00:00Z for every entry
FILE_MODE = 0o644
GZIP_LEVEL = 9
# Tar framing on top of the file bytes: a header, a PAX header for long or non-ASCII names,
# and block padding per member, then the end-of-archive blocks padded to a 10 KiB record.
_OVERHEAD_PER_MEMBER = 4096
_OVERHEAD_FIXED = 2 * tarfile.RECORDSIZE


@dataclass(frozen=True, slots=True)
class Build:
    """A component build: the layer archive and the manifest as the OCI config blob.

    ``files`` lists the archive's entries in order. ``ignored`` lists what was in the
    folder but left out (files with other suffixes, dotfiles, ``__pycache__``), so a
    renderer can say so; ``warnings`` are the manifest's non-blocking diagnostics.
    """

    manifest: ComponentManifest
    archive: bytes
    digest: str
    manifest_json: bytes
    config_digest: str
    files: tuple[str, ...]
    ignored: tuple[str, ...] = ()
    warnings: tuple[Diagnostic, ...] = ()

    @property
    def media_type(self) -> str:
        """The OCI media type of ``archive``."""
        return LAYER_MEDIA_TYPE


def build(path: Path) -> Build:
    """Validate the component folder ``path`` and pack it into a reproducible archive.

    Does no writing: the result lives in memory (at most ``MAX_TOTAL_BYTES`` of files).
    Raises ``InvalidInputError`` carrying every problem at once: the manifest's validation
    diagnostics and each refused file (symlinks, special files, unsafe names, size and
    count limits, a missing README).
    """
    root = Path(path)
    diags: list[Diagnostic] = []
    if not root.is_dir():
        diag = error(
            "Not a component folder",
            f"'{os.fspath(root)}' is not a directory. Give the folder that holds "
            f"{MANIFEST_FILE}, {README_FILE} and {TESTS_DIR}/.",
            file=os.fspath(root),
        )
        raise InvalidInputError(f"{os.fspath(root)}: not a component folder", [diag])
    files, ignored, scan_diags = _scan(root)
    diags.extend(scan_diags)
    manifest: ComponentManifest | None = None
    # Only a regular component.yaml is read: a symlink is refused by the scan, a fifo would hang.
    if MANIFEST_FILE in files or not os.path.lexists(root / MANIFEST_FILE):
        manifest, manifest_diags = validate_component(root)
        diags.extend(manifest_diags)
    for required in (MANIFEST_FILE, README_FILE):
        where = os.fspath(root / required)
        if required in files or any(d.file == where for d in diags):
            continue
        if os.path.lexists(where):
            diags.append(
                error(
                    "Not a regular file",
                    f"'{where}' must be a regular file. Replace it with one.",
                    file=where,
                )
            )
        elif required == README_FILE:
            diags.append(
                error(
                    "README missing",
                    f"A component needs a {README_FILE} next to {MANIFEST_FILE}; the catalog "
                    "shows it. Add one that says what the component provides and how to use it.",
                    file=where,
                )
            )
    manifest_json = b""
    if manifest is not None:
        try:
            manifest_json = canonical_bytes(manifest.raw, allow_nan=False)
        except (TypeError, ValueError) as exc:
            diags.append(
                error(
                    "Manifest not JSON-compatible",
                    f"{MANIFEST_FILE} holds a value JSON cannot represent ({exc}). Quote "
                    "dates and times, and use no NaN or infinite numbers.",
                    file=os.fspath(root / MANIFEST_FILE),
                )
            )
    contents: dict[str, bytes] = {}
    if not has_errors(diags):
        contents = _read_all(root, files, diags)
    if manifest is not None and not has_errors(diags):
        _check_unchanged(root, manifest, contents[MANIFEST_FILE], diags)
    if manifest is None or has_errors(diags):
        raise _refused(root, diags)

    archive = pack(contents)
    return Build(
        manifest=manifest,
        archive=archive,
        digest=sha256_digest(archive),
        manifest_json=manifest_json,
        config_digest=sha256_digest(manifest_json),
        files=tuple(sorted(contents)),
        ignored=tuple(ignored),
        warnings=tuple(diags),
    )


def pack(contents: dict[str, bytes]) -> bytes:
    """Pack ``{archive path: bytes}`` into the reproducible tar+gzip layer format."""
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="", compresslevel=GZIP_LEVEL) as gz,
        tarfile.TarFile(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar,
    ):
        for name in sorted(contents):
            data = contents[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = ENTRY_MTIME
            info.mode = FILE_MODE
            info.type = tarfile.REGTYPE
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write(build: Build, out: Path) -> None:
    """Write ``build.archive`` to ``out`` atomically (a temp file beside it, then rename).

    After a failure ``out`` is untouched and no temp file is left. Repeating is safe.
    """
    out = Path(out)
    try:
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as exc:
        raise _unwritable(out, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(build.archive)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, out)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # the path the user gave: a folder, a missing parent
            raise _unwritable(out, exc) from None
        raise


def _unwritable(out: Path, exc: OSError) -> InvalidInputError:
    why = exc.strerror or str(exc)
    return InvalidInputError(
        f"Cannot write the archive to '{out}': {why}",
        [
            error(
                "Cannot write file", f"'{out}': {why}. Give --out a file path in a writable folder."
            )
        ],
    )


def unpack(
    archive: bytes,
    dest: Path,
    *,
    max_bytes: int = MAX_TOTAL_BYTES,
    max_files: int = MAX_FILES,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> list[str]:
    """Extract a component archive into ``dest`` (which must not exist, or be empty).

    Everything is checked before anything is written: the gzip stream is decompressed with
    a bound (a gzip bomb stops at the bound, whatever the tar headers claim), then every
    member must be a regular file (or directory) with a safe, relative, unique name, within
    the size and count limits, and ``component.yaml`` must be present. The files are then
    written into a temp folder beside ``dest`` and renamed into place, so after a refusal or
    failure ``dest`` is as it was. Modes in the archive are ignored (files are 0644).
    Returns the extracted file paths, sorted. Raises ``InvalidInputError`` on any refusal.
    """
    dest = Path(dest)
    contents, dirs = _read_archive(
        archive, max_bytes=max_bytes, max_files=max_files, max_file_bytes=max_file_bytes
    )
    check_destination(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    except OSError as exc:
        raise _archive_error(
            "Destination not writable",
            f"Cannot create '{os.fspath(dest)}': {exc.strerror}. Give a path in a writable folder.",
        ) from None
    try:
        for name in sorted(dirs):
            (tmp / name).mkdir(parents=True, exist_ok=True)
        for name, content in sorted(contents.items()):
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("xb") as fh:
                fh.write(content)
            os.chmod(target, FILE_MODE)
        if dest.is_dir():
            dest.rmdir()  # empty, checked above; os.replace onto a folder is POSIX-only
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(contents)


def read_archive(archive: bytes) -> dict[str, bytes]:
    """The files of a component archive, ``{path: bytes}``, checked as ``unpack`` checks them
    (bounded inflation, safe names, size and count limits) and never written anywhere.

    The one way stackyard reads an archive: ``unpack`` and ``component show`` (the README)
    both go through it. Raises ``InvalidInputError`` on any refusal.
    """
    return _read_archive(
        archive, max_bytes=MAX_TOTAL_BYTES, max_files=MAX_FILES, max_file_bytes=MAX_FILE_BYTES
    )[0]


def _read_archive(
    archive: bytes, *, max_bytes: int, max_files: int, max_file_bytes: int
) -> tuple[dict[str, bytes], set[str]]:
    data = _decompress(archive, max_bytes + max_files * _OVERHEAD_PER_MEMBER + _OVERHEAD_FIXED)
    return _read_members(
        data, max_bytes=max_bytes, max_files=max_files, max_file_bytes=max_file_bytes
    )


# --- building ---------------------------------------------------------------------------


def _scan(root: Path) -> tuple[list[str], list[str], list[Diagnostic]]:
    """Walk ``root`` without following links: the files to pack, those left out, problems."""
    files: list[str] = []
    ignored: list[str] = []
    diags: list[Diagnostic] = []
    total = 0
    stack: list[str] = [""]
    while stack:
        rel_dir = stack.pop()
        folder = root / rel_dir if rel_dir else root
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            diags.append(
                error(
                    "Folder not readable",
                    f"'{os.fspath(folder)}' cannot be listed: {exc.strerror}.",
                    file=os.fspath(folder),
                )
            )
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            where = os.fspath(folder / entry.name)
            if _excluded(entry.name):
                ignored.append(rel)
                continue
            problem = _name_problem(rel)
            if problem:
                diags.append(error("Unsafe file name", f"'{rel}' {problem}.", file=where))
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                diags.append(error("File not readable", f"'{where}': {exc.strerror}.", file=where))
                continue
            if stat.S_ISLNK(st.st_mode):
                diags.append(
                    error(
                        "Symbolic link refused",
                        f"'{rel}' is a symbolic link. A component package holds only regular "
                        "files, so links are refused even when they point inside the folder. "
                        "Replace it with a copy of the file.",
                        file=where,
                    )
                )
            elif stat.S_ISDIR(st.st_mode):
                stack.append(rel)
            elif not stat.S_ISREG(st.st_mode):
                diags.append(
                    error(
                        "Special file refused",
                        f"'{rel}' is not a regular file (a fifo, socket or device). "
                        "Remove it from the component folder.",
                        file=where,
                    )
                )
            elif not _wanted(rel):
                ignored.append(rel)
            elif st.st_size > MAX_FILE_BYTES:
                diags.append(
                    error(
                        "File too large",
                        f"'{rel}' is {st.st_size} bytes; a packaged file may be at most "
                        f"{MAX_FILE_BYTES} bytes (1 MiB).",
                        file=where,
                    )
                )
            else:
                files.append(rel)
                total += st.st_size
                if len(files) > MAX_FILES:
                    diags.append(_too_many(root))
                    return files, ignored, diags
    if total > MAX_TOTAL_BYTES:
        diags.append(_too_big(root, total))
    return files, ignored, diags


def _read_all(root: Path, files: list[str], diags: list[Diagnostic]) -> dict[str, bytes]:
    """Read each file through a descriptor that refuses links and non-regular files."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    flags |= getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    real_root = Path(os.path.realpath(root))
    contents: dict[str, bytes] = {}
    total = 0
    for rel in files:
        file = root / rel
        where = os.fspath(file)
        if not Path(os.path.realpath(file)).is_relative_to(real_root):
            diags.append(
                error(
                    "Path outside the component folder",
                    f"'{rel}' resolves outside '{os.fspath(root)}'. Keep every file inside "
                    "the component folder.",
                    file=where,
                )
            )
            continue
        try:
            fd = os.open(file, flags)
        except OSError as exc:
            diags.append(error("File not readable", f"'{where}': {exc.strerror}.", file=where))
            continue
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                diags.append(
                    error("Special file refused", f"'{rel}' is not a regular file.", file=where)
                )
                continue
            data = fh.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            diags.append(
                error(
                    "File too large",
                    f"'{rel}' grew past {MAX_FILE_BYTES} bytes (1 MiB) while being read.",
                    file=where,
                )
            )
            continue
        contents[rel] = data
        total += len(data)
    if total > MAX_TOTAL_BYTES:
        diags.append(_too_big(root, total))
    return contents


def _check_unchanged(
    root: Path, manifest: ComponentManifest, packed: bytes, diags: list[Diagnostic]
) -> None:
    """The packed ``component.yaml`` must be the one validated (no edit in between)."""
    where = os.fspath(root / MANIFEST_FILE)
    try:
        same = parse_yaml(packed.decode("utf-8"), file=where) == manifest.raw
    except (UnicodeDecodeError, InvalidInputError):
        same = False
    if not same:
        diags.append(
            error(
                "File changed during build",
                f"'{where}' changed while the component was being built. Build again.",
                file=where,
            )
        )


def _excluded(name: str) -> bool:
    return (
        name.startswith(".")
        or name in EXCLUDED_DIRS
        or PurePosixPath(name).suffix in EXCLUDED_SUFFIXES
    )


def _wanted(rel: str) -> bool:
    if rel in (MANIFEST_FILE, README_FILE) or rel.startswith(TESTS_DIR + "/"):
        return True
    return PurePosixPath(rel).suffix.lower() in TEMPLATE_SUFFIXES


def _name_problem(rel: str) -> str:
    """Why a relative POSIX path cannot go in (or come out of) an archive, or ``""``."""
    if not rel:
        return "is empty"
    if len(rel) > MAX_PATH_CHARS:
        return f"is longer than {MAX_PATH_CHARS} characters"
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if any(unicodedata.category(c) == "Cc" for c in rel):
        return "contains a control character"
    if "\\" in rel:
        return "contains a backslash"
    if rel.startswith("/"):
        return "is an absolute path"
    parts = rel.split("/")
    if ".." in parts:
        return "contains a '..' component"
    if any(p in ("", ".") for p in parts):
        return "contains an empty or '.' component"
    if len(parts[0]) >= 2 and parts[0][1] == ":" and parts[0][0].isalpha():
        return "starts with a drive letter"
    return ""


def _too_many(root: Path) -> Diagnostic:
    return error(
        "Too many files",
        f"The component folder has more than {MAX_FILES} files to package. Keep only "
        "component.yaml, README.md, tests/ and the template files it needs.",
        file=os.fspath(root),
    )


def _too_big(root: Path, total: int) -> Diagnostic:
    return error(
        "Component too large",
        f"The files to package add up to {total} bytes; the limit is {MAX_TOTAL_BYTES} "
        "bytes (10 MiB). Remove large files from the component folder.",
        file=os.fspath(root),
    )


def _refused(root: Path, diags: list[Diagnostic]) -> InvalidInputError:
    errors = [d for d in diags if d.severity is Severity.ERROR]
    return InvalidInputError(
        f"{os.fspath(root)}: cannot build the component ({len(errors)} error(s))",
        diags,
        hint="Fix each error, then build again. Nothing was written.",
    )


# --- unpacking --------------------------------------------------------------------------


def _decompress(archive: bytes, limit: int) -> bytes:
    """Gunzip ``archive``, reading at most ``limit + 1`` bytes so a bomb stops early."""
    if archive[:2] != b"\x1f\x8b":
        raise _archive_error(
            "Not a gzip archive",
            f"The data does not start with the gzip signature; a component layer is "
            f"{LAYER_MEDIA_TYPE}.",
        )
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(archive), mode="rb") as gz:
            data = gz.read(limit + 1)
    except EOFError:
        raise _archive_error(
            "Truncated archive", "The gzip stream ends early; download it again."
        ) from None
    except (OSError, zlib.error) as exc:
        raise _archive_error("Corrupt archive", f"The gzip stream is damaged: {exc}.") from None
    if len(data) > limit:
        raise _archive_error(
            "Archive too large",
            f"The archive decompresses to more than {limit} bytes; refused as a possible "
            "gzip bomb.",
        )
    return data


def _read_members(
    data: bytes, *, max_bytes: int, max_files: int, max_file_bytes: int
) -> tuple[dict[str, bytes], set[str]]:
    """Check every tar member and read the files into memory; raise on the first refusal."""
    contents: dict[str, bytes] = {}
    dirs: set[str] = set()
    seen: dict[str, str] = {}  # folded name -> name, for duplicates and case clashes
    total = 0
    try:
        with tarfile.TarFile(
            fileobj=io.BytesIO(data), mode="r", encoding="utf-8", errors="strict"
        ) as tar:
            for count, member in enumerate(iter(tar.next, None), start=1):
                name = member.name
                problem = _name_problem(name)
                if problem:
                    raise _archive_error("Unsafe path in archive", f"'{name}' {problem}.", name)
                if count > max_files:
                    raise _archive_error(
                        "Too many files", f"The archive holds more than {max_files} entries."
                    )
                folded = unicodedata.normalize("NFC", name).casefold()
                if folded in seen:
                    raise _archive_error(
                        "Duplicate entry",
                        f"'{name}' appears more than once (or clashes with "
                        f"'{seen[folded]}' on a case-insensitive file system).",
                        name,
                    )
                seen[folded] = name
                if member.type == tarfile.DIRTYPE:
                    dirs.add(name)
                    continue
                if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.sparse:
                    raise _archive_error(
                        "Link or special file in archive",
                        f"'{name}' is a {_kind(member)}; a component archive holds only "
                        "regular files.",
                        name,
                    )
                if member.size > max_file_bytes:
                    raise _archive_error(
                        "File too large",
                        f"'{name}' is {member.size} bytes; the limit is {max_file_bytes}.",
                        name,
                    )
                total += member.size
                if total > max_bytes:
                    raise _archive_error(
                        "Archive too large",
                        f"The files add up to more than {max_bytes} bytes.",
                    )
                if member.offset_data + member.size > len(data):
                    raise _archive_error(
                        "Truncated archive", f"'{name}' ends before its stated size.", name
                    )
                fh = tar.extractfile(member)
                content = fh.read(member.size + 1) if fh is not None else b""
                if len(content) != member.size:
                    raise _archive_error(
                        "Truncated archive", f"'{name}' ends before its stated size.", name
                    )
                contents[name] = content
            end = tar.offset
    except InvalidInputError:
        raise
    except (tarfile.TarError, EOFError, ValueError, UnicodeError, OSError) as exc:
        raise _archive_error("Corrupt archive", f"The tar data cannot be read: {exc}.") from None
    if data[end : end + 2 * tarfile.BLOCKSIZE] != bytes(2 * tarfile.BLOCKSIZE):
        raise _archive_error(
            "Truncated archive", "The tar data has no end-of-archive marker; it was cut short."
        )
    _check_tree(contents, dirs)
    return contents, dirs


def _check_tree(contents: dict[str, bytes], dirs: set[str]) -> None:
    """A file cannot also be a folder, and a component archive holds ``component.yaml``."""
    for name in contents:
        parents = [str(p) for p in PurePosixPath(name).parents if str(p) != "."]
        clash = next((p for p in parents if p in contents), None)
        if clash is not None:
            raise _archive_error(
                "Duplicate entry", f"'{clash}' is a file and also a folder of '{name}'.", name
            )
    if MANIFEST_FILE not in contents:
        raise _archive_error(
            "Not a component archive", f"The archive has no {MANIFEST_FILE} at its root."
        )


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"symbolic link to '{member.linkname}'"
    if member.islnk():
        return f"hard link to '{member.linkname}'"
    if member.isdev():
        return "device or fifo"
    return f"entry of type {member.type!r}"


def _archive_error(summary: str, detail: str, member: str = "") -> InvalidInputError:
    diag = error(summary, detail, subject=member)
    return InvalidInputError(
        f"Component archive refused: {summary}",
        [diag],
        hint="Nothing was written. Rebuild the component with 'stackyard component build'.",
    )


def check_destination(dest: Path) -> None:
    """Refuse a destination that is not a new path or an empty folder, before any download."""
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        raise _archive_error(
            "Destination not empty",
            f"'{os.fspath(dest)}' already exists and is not an empty folder. Give a new path.",
        )
    parent = dest.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise _archive_error(
            "Destination not writable",
            f"Cannot create '{os.fspath(dest)}': '{os.fspath(parent)}' is not a writable folder.",
        )
