"""Source files: reading YAML and JSON safely (size, alias-bomb and depth limits)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from stackyard.diagnostics import Diagnostic, error
from stackyard.errors import InvalidInputError

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_EXPANDED_NODES = 100_000


def files_under(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Regular files under ``root`` with one of ``suffixes``, sorted. Folders that vanish or
    cannot be read while walking are skipped, and symlinked folders are not followed."""
    found: list[Path] = []
    for folder, _dirs, files in os.walk(root):
        found.extend(Path(folder) / f for f in files if f.endswith(suffixes))
    return sorted(p for p in found if p.is_file())


def read_text(path: Path, *, limit: int = MAX_FILE_BYTES) -> str:
    """Read a UTF-8 file of at most ``limit`` bytes, or raise ``InvalidInputError``."""
    name = str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _invalid(name, "File not found", f"'{name}' does not exist.") from None
    except OSError as exc:
        raise _invalid(
            name, "File not readable", f"'{name}' cannot be read: {exc.strerror}."
        ) from None
    if path.is_dir():
        raise _invalid(name, "Not a file", f"'{name}' is a directory; give a file.")
    if st.st_size > limit:
        raise _invalid(
            name,
            "File too large",
            f"'{name}' is {st.st_size} bytes; the limit is {limit} bytes ({limit // 1024} KiB).",
        )
    try:
        with path.open("rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise _invalid(
            name, "File not readable", f"'{name}' cannot be read: {exc.strerror}."
        ) from None
    if len(raw) > limit:
        raise _invalid(name, "File too large", f"'{name}' is over the limit of {limit} bytes.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(
            name,
            "Not UTF-8 text",
            f"'{name}' is not valid UTF-8 (byte {exc.start}). Save it as UTF-8.",
        ) from None


def load_yaml(path: Path | str, *, what: str = "document") -> Any:
    """Load one YAML (or JSON) document from a file, refusing anything hostile.

    Refused, each with a diagnostic: files over 1 MiB, non-UTF-8 bytes, syntax errors,
    several documents, alias expansion beyond ``MAX_EXPANDED_NODES`` nodes (billion laughs),
    recursive aliases, and nesting deeper than ``MAX_DEPTH``.
    """
    p = Path(path)
    return parse_yaml(read_text(p), file=os.fspath(p), what=what)


def parse_yaml(text: str, *, file: str = "<input>", what: str = "document") -> Any:
    """Parse YAML text with the same limits as ``load_yaml``."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise _invalid(
            file, "File too large", f"'{file}' is over the limit of {MAX_FILE_BYTES} bytes."
        )
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise _invalid(
            file, "Malformed YAML", f"'{file}' is not valid YAML{where}: {exc.problem or exc}."
        ) from None
    except yaml.YAMLError as exc:
        raise _invalid(file, "Malformed YAML", f"'{file}' is not valid YAML: {exc}.") from None
    except RecursionError:
        raise _invalid(
            file, "Nesting too deep", f"'{file}' nests deeper than {MAX_DEPTH} levels."
        ) from None
    if not nodes:
        raise _invalid(file, "Empty file", f"'{file}' holds no {what}.")
    if len(nodes) > 1:
        raise _invalid(
            file, "Several documents", f"'{file}' holds {len(nodes)} YAML documents; give one."
        )
    node = nodes[0]
    _check_shape(node, file)
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _invalid(file, "Malformed YAML", f"'{file}' is not valid YAML: {exc}.") from None
    except (RecursionError, TypeError, ValueError) as exc:
        raise _invalid(file, "Malformed YAML", f"'{file}' cannot be loaded: {exc}.") from None
    finally:
        loader.dispose()


def _check_shape(root: yaml.Node, file: str) -> None:
    """Measure the expanded size and depth of a node graph without expanding it."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, depth)
    on_path: set[int] = set()

    def visit(node: yaml.Node, depth: int) -> tuple[int, int]:
        if depth > MAX_DEPTH:
            raise _invalid(
                file, "Nesting too deep", f"'{file}' nests deeper than {MAX_DEPTH} levels."
            )
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in on_path:
            raise _invalid(file, "Recursive alias", f"'{file}' has an alias that refers to itself.")
        on_path.add(key)
        total, deepest = 1, 0
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                children.extend((k, v))
        for child in children:
            n, d = visit(child, depth + 1)
            total += n
            deepest = max(deepest, d + 1)
            if total > MAX_EXPANDED_NODES:
                raise _invalid(
                    file,
                    "Document too large",
                    f"'{file}' expands to more than {MAX_EXPANDED_NODES} values "
                    "(aliases multiply); this looks like an alias bomb.",
                )
        on_path.discard(key)
        sizes[key] = (total, deepest)
        return total, deepest

    try:
        visit(root, 0)
    except RecursionError:
        raise _invalid(
            file, "Nesting too deep", f"'{file}' nests deeper than {MAX_DEPTH} levels."
        ) from None


def _invalid(file: str, summary: str, detail: str) -> InvalidInputError:
    diag: Diagnostic = error(summary, detail, file=file)
    return InvalidInputError(f"{file}: {summary}", [diag])
