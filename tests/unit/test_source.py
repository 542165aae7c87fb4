"""Source files: the size, encoding, alias-bomb and depth limits of ``model/source.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackyard.errors import InvalidInputError
from stackyard.model.source import (
    MAX_DEPTH,
    MAX_EXPANDED_NODES,
    MAX_FILE_BYTES,
    load_yaml,
    parse_yaml,
    read_text,
)

pytestmark = pytest.mark.unit


def _summaries(exc: pytest.ExceptionInfo[InvalidInputError]) -> list[str]:
    return [d.summary for d in exc.value.diagnostics]


def _bomb(levels: int, width: int = 9) -> str:
    lines = ['l0: &l0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_loads_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("a: [1, {b: c}]\n", encoding="utf-8")
    (tmp_path / "a.json").write_text('{"a": [1, {"b": "c"}]}', encoding="utf-8")
    assert (
        load_yaml(tmp_path / "a.yaml") == load_yaml(tmp_path / "a.json") == {"a": [1, {"b": "c"}]}
    )


# (text, summary, reason)
REFUSED = [
    ("a: [1, 2\n", "Malformed YAML", "unclosed flow sequence"),
    ("a: 'x\n", "Malformed YAML", "unclosed quote"),
    ("a:\n\t- b\n", "Malformed YAML", "tab indentation"),
    ("a: !!python/object/apply:os.system [id]\n", "Malformed YAML", "python tags are refused"),
    ("? [a, b]\n: c\n", "Malformed YAML", "unhashable keys"),
    ("a: \x00\n", "Malformed YAML", "NUL characters"),
    ("", "Empty file", "no document at all"),
    ("# only a comment\n", "Empty file", "comments are not a document"),
    ("a: 1\n---\nb: 2\n", "Several documents", "two documents"),
    ("---\n---\n", "Several documents", "two empty documents"),
    ("a: &a [*a]\n", "Recursive alias", "an alias inside its own anchor"),
    (_bomb(9), "Document too large", "billion laughs"),
    (_bomb(3, width=60), "Document too large", "a wide bomb"),
    ("[" * 10_000 + "]" * 10_000, "Nesting too deep", "10,000 nested flow lists"),
    ("{a: " * 5_000 + "1" + "}" * 5_000, "Nesting too deep", "5,000 nested flow mappings"),
    (
        "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 5)) + "  " * (MAX_DEPTH + 5) + "v",
        "Nesting too deep",
        "block mappings past the depth limit",
    ),
]


@pytest.mark.parametrize(("text", "summary", "reason"), REFUSED, ids=[c[2] for c in REFUSED])
def test_refused(text: str, summary: str, reason: str) -> None:
    with pytest.raises(InvalidInputError) as exc:
        parse_yaml(text, file="in.yaml")
    assert _summaries(exc) == [summary], reason
    (diag,) = exc.value.diagnostics
    assert diag.file == "in.yaml"
    assert diag.detail


def test_malformed_yaml_names_line_and_column() -> None:
    with pytest.raises(InvalidInputError) as exc:
        parse_yaml("a: 1\nb: [2\n", file="in.yaml")
    assert "line 3, column 1" in exc.value.diagnostics[0].detail


def test_shared_aliases_within_limits_are_fine() -> None:
    data = parse_yaml(_bomb(3, width=9))
    assert len(data["l3"]) == 9
    assert data["l3"][0] == data["l2"]


def test_expansion_limit_counts_expanded_nodes() -> None:
    # 9**5 leaves (59049) plus inner nodes stays under the limit; 9**6 does not.
    assert 9**5 < MAX_EXPANDED_NODES < 9**6
    parse_yaml(_bomb(4))
    with pytest.raises(InvalidInputError):
        parse_yaml(_bomb(6))


def test_depth_limit_edge() -> None:
    assert parse_yaml("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    with pytest.raises(InvalidInputError) as exc:
        parse_yaml("[" * (MAX_DEPTH + 2) + "1" + "]" * (MAX_DEPTH + 2))
    assert _summaries(exc) == ["Nesting too deep"]


def test_parse_yaml_refuses_oversized_text() -> None:
    with pytest.raises(InvalidInputError) as exc:
        parse_yaml("#" * (MAX_FILE_BYTES + 1))
    assert _summaries(exc) == ["File too large"]


def test_file_over_limit_is_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: b\n" + b"#" * MAX_FILE_BYTES)
    with pytest.raises(InvalidInputError) as exc:
        load_yaml(big)
    assert _summaries(exc) == ["File too large"]
    assert exc.value.diagnostics[0].file == str(big)


def test_read_text_limit_parameter(tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_text("x" * 11, encoding="utf-8")
    assert read_text(f, limit=11) == "x" * 11
    with pytest.raises(InvalidInputError):
        read_text(f, limit=10)


# (content, summary, reason)
FILES = [
    (None, "File not found", "a missing file"),
    ("dir", "Not a file", "a directory"),
    ("apiVersion: x\n".encode("utf-16"), "Not UTF-8 text", "UTF-16 with a BOM"),
    (b"caf\xe9: 1\n", "Not UTF-8 text", "Latin-1"),
    (bytes(range(256)), "Not UTF-8 text", "binary junk"),
]


@pytest.mark.parametrize(("content", "summary", "reason"), FILES, ids=[c[2] for c in FILES])
def test_file_problems(
    tmp_path: Path, content: bytes | str | None, summary: str, reason: str
) -> None:
    target = tmp_path / "target.yaml"
    if content == "dir":
        target.mkdir()
    elif isinstance(content, bytes):
        target.write_bytes(content)
    with pytest.raises(InvalidInputError) as exc:
        load_yaml(target)
    assert _summaries(exc) == [summary], reason
    assert exc.value.diagnostics[0].file == str(target)
    assert exc.value.exit_code == 2


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "bom.yaml"
    f.write_bytes("\ufeffa: 1\n".encode())
    assert load_yaml(f) == {"a": 1}
