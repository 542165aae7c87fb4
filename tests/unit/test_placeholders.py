"""Placeholders: Score's ``${a.b.c}`` grammar, substitution, and Unknown/Secret propagation."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackyard.errors import PlaceholderError
from stackyard.model.placeholders import (
    Reference,
    find_references,
    lookup,
    parse,
    render,
    split_path,
    substitute,
)
from stackyard.model.values import Secret, Unknown

pytestmark = pytest.mark.unit

DATA: dict[str, Any] = {
    "metadata": {"name": "checkout", "annotations": {"team.io/owner": "shop"}},
    "resources": {
        "db": {"host": "db.local", "port": 5432, "tls": True, "opts": {"a": 1}, "none": None},
        "cache": {"hosts": ["h1", "h2"]},
        "vault": {"password": Secret("s3cret"), "nested": {"key": Secret("k")}},
        "later": {"url": Unknown("resources.later.url"), "map": {"id": Unknown("x")}},
        "sealed": Secret({"url": Unknown("sealed.url")}),
    },
}


def resolve(ref: Reference) -> Any:
    return lookup(DATA, ref)


# (text, expected segments, reason)
PARSE_CASES = [
    ("plain", ["plain"], "no dollar: one literal"),
    ("${a.b}", [("a", "b")], "a reference splits on dots"),
    ("x ${a.b} y", ["x ", ("a", "b"), " y"], "literal text around a reference is kept"),
    ("$$", ["$"], "$$ is a literal dollar"),
    ("$${a.b}", ["${a.b}"], "$$ escapes a whole placeholder"),
    ("$$$${a}", ["$${a}"], "each $$ is one dollar"),
    ("cost $5", ["cost $5"], "a lone $ before anything else is kept"),
    ("end$", ["end$"], "a trailing $ is kept"),
    (r"${a\.b.c}", [("a.b", "c")], r"\. is a dot inside a key"),
    (
        r"${metadata.annotations.team\.io/owner}",
        [("metadata", "annotations", "team.io/owner")],
        "annotation keys with dots",
    ),
    ("${a}${b}", [("a",), ("b",)], "adjacent references"),
    ("${a.0}", [("a", "0")], "list indexes are keys"),
    ("${ a }", [(" a ",)], "keys are taken as written"),
]


def _shape(segments: list[str | Reference]) -> list[Any]:
    return [s.parts if isinstance(s, Reference) else s for s in segments]


@pytest.mark.parametrize(
    ("text", "expected", "reason"), PARSE_CASES, ids=[c[2] for c in PARSE_CASES]
)
def test_parse(text: str, expected: list[Any], reason: str) -> None:
    assert _shape(parse(text)) == expected, reason


# (text, message fragment, reason)
BAD_CASES = [
    ("${a.b", "Unterminated placeholder", "no closing brace"),
    ("x ${", "Unterminated placeholder", "opening at the very end"),
    ("${}", "empty key", "nothing inside"),
    ("${a..b}", "empty key", "two dots make an empty key"),
    ("${a.}", "empty key", "trailing dot"),
    ("${.a}", "empty key", "leading dot"),
    ("${ }", "empty key", "a blank key"),
    ("${a.${b}}", "Nested placeholder", "placeholders do not nest"),
    ("${" + "k" * 2000 + "}", "longer than", "length limit"),
]


@pytest.mark.parametrize(("text", "fragment", "reason"), BAD_CASES, ids=[c[2] for c in BAD_CASES])
def test_parse_rejects(text: str, fragment: str, reason: str) -> None:
    with pytest.raises(PlaceholderError) as exc:
        parse(text, location="containers.web.variables.X")
    assert fragment in exc.value.message, reason
    assert exc.value.path == "containers.web.variables.X"
    assert "containers.web.variables.X" in exc.value.message


def test_split_path_escapes() -> None:
    assert split_path(r"a\.b\.c.d") == ("a.b.c", "d")
    assert split_path(r"a\b") == (r"a\b",)  # a backslash before anything else is literal


# (value, expected, reason)
SUBSTITUTE_CASES = [
    ("${resources.db.port}", 5432, "a standalone reference keeps its type (int)"),
    ("${resources.db.tls}", True, "a standalone reference keeps its type (bool)"),
    ("${resources.db.opts}", {"a": 1}, "a standalone reference keeps its type (mapping)"),
    ("${resources.db.none}", None, "a standalone reference keeps null"),
    ("${resources.cache.hosts}", ["h1", "h2"], "a standalone reference keeps lists"),
    ("${resources.cache.hosts.1}", "h2", "list index"),
    ("${resources.db.host}:${resources.db.port}", "db.local:5432", "ints are JSON in strings"),
    ("tls=${resources.db.tls}", "tls=true", "bools are JSON in strings"),
    ("n=${resources.db.none}", "n=null", "null is JSON in strings"),
    ("o=${resources.db.opts}", 'o={"a":1}', "mappings are compact JSON in strings"),
    ("h=${resources.cache.hosts}", 'h=["h1","h2"]', "lists are compact JSON in strings"),
    ("$${resources.db.host}", "${resources.db.host}", "escaped placeholders are not resolved"),
    ("${metadata.name}-$$", "checkout-$", "mixed"),
    (
        r"${metadata.annotations.team\.io/owner}",
        "shop",
        "escaped dots reach keys with dots",
    ),
    (
        {"a": ["${metadata.name}", 1, {"b": "x${resources.db.port}"}]},
        {"a": ["checkout", 1, {"b": "x5432"}]},
        "nested data is walked; non-strings kept",
    ),
]


@pytest.mark.parametrize(
    ("value", "expected", "reason"), SUBSTITUTE_CASES, ids=[c[2] for c in SUBSTITUTE_CASES]
)
def test_substitute(value: Any, expected: Any, reason: str) -> None:
    assert substitute(value, resolve) == expected, reason


# (text, expected kind, inner value or None, reason)
MARKER_CASES = [
    ("${resources.later.url}", Unknown, None, "a standalone unknown stays unknown"),
    ("x${resources.later.url}", Unknown, None, "an embedded unknown makes the string unknown"),
    ("${resources.later.url.deeper}", Unknown, None, "lookup stops at an unknown"),
    ("x${resources.later.map}", Unknown, None, "an unknown nested in an embedded mapping"),
    ("${resources.vault.password}", Secret, "s3cret", "a standalone secret stays secret"),
    ("p=${resources.vault.password}", Secret, "p=s3cret", "an embedded secret marks the string"),
    ("n=${resources.vault.nested}", Secret, 'n={"key":"k"}', "a nested secret marks the string"),
    ("${resources.vault.password}${resources.later.url}", Secret, Unknown, "secret then unknown"),
    ("${resources.later.url}${resources.vault.password}", Secret, Unknown, "unknown then secret"),
    ("${resources.sealed.url}", Secret, Unknown, "a key under a secret is secret"),
]


@pytest.mark.parametrize(
    ("text", "kind", "inner", "reason"), MARKER_CASES, ids=[c[3] for c in MARKER_CASES]
)
def test_unknown_and_secret_propagate(text: str, kind: type, inner: Any, reason: str) -> None:
    out = substitute(text, resolve)
    assert isinstance(out, kind), reason
    if kind is Secret and inner is Unknown:
        assert isinstance(out.value, Unknown), reason
    elif inner is not None:
        assert out.value == inner, reason


# (text, message fragment, reason)
LOOKUP_ERRORS = [
    ("${foo.bar}", "Unknown placeholder root 'foo'", "unknown root"),
    ("${resources.nope.x}", "Unknown key 'nope'", "unknown resource"),
    (
        "${resources.db.hots}",
        "'resources.db' has: host, none, opts, port, tls",
        "lists what exists",
    ),
    ("${resources.cache.hosts.7}", "Unknown key '7'", "index out of range"),
    ("${resources.cache.hosts.x}", "'resources.cache.hosts' is a list", "non-index into a list"),
    ("${resources.db.port.x}", "is a int, not a mapping", "key into a scalar"),
    ("${resources.cache.hosts.²}", "Unknown key '²'", "a non-ASCII digit is not an index"),
]


@pytest.mark.parametrize(
    ("text", "fragment", "reason"), LOOKUP_ERRORS, ids=[c[2] for c in LOOKUP_ERRORS]
)
def test_lookup_errors_name_the_path(text: str, fragment: str, reason: str) -> None:
    with pytest.raises(PlaceholderError) as exc:
        substitute({"env": {"X": text}}, resolve)
    assert fragment in exc.value.message, reason
    assert exc.value.path == "env.X"


def test_lookup_roots_restrict() -> None:
    (ref,) = find_references("${resources.db.host}")
    with pytest.raises(PlaceholderError, match="expected one of: metadata"):
        lookup(DATA, ref, roots=["metadata"])


def test_find_references_locations() -> None:
    refs = find_references(
        {"vars": {"A": "${a.b}", "B.C": ["x", "${c} and ${d.e}"]}, "n": 3}, location="spec"
    )
    assert [(r.parts, r.location) for r in refs] == [
        (("a", "b"), "spec.vars.A"),
        (("c",), r"spec.vars.B\.C[1]"),
        (("d", "e"), r"spec.vars.B\.C[1]"),
    ]
    assert str(refs[0]) == "${a.b}"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({1: "a", "b": 2}, "mixed key types cannot be sorted"),
        ({"k": object()}, "objects have no JSON form"),
    ],
    ids=["mixed-keys", "object"],
)
def test_render_refuses_with_placeholder_error(value: Any, reason: str) -> None:
    with pytest.raises(PlaceholderError):
        render(value)


def test_circular_value_is_a_placeholder_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(PlaceholderError):
        substitute("x${a}", lambda ref: loop)


# Property tests: whatever the input, only PlaceholderError escapes.

raw_text = st.text(alphabet=st.sampled_from(list("ab.$\\{}0 ²\n")) | st.characters(), max_size=40)
keys = st.text(alphabet=st.sampled_from(list("ab.$\\{}0²")), min_size=1, max_size=4)
# Well-formed references into the data under test (roots "a" and "b"), in some text.
references = st.builds(
    lambda pre, root, path, post: pre + "${" + ".".join([root, *path]) + "}" + post,
    st.sampled_from(["", "x", "$$"]),
    st.sampled_from(["a", "b"]),
    st.lists(st.sampled_from(["a", "b", "0", "1", "²"]), max_size=3),
    st.sampled_from(["", "y", "${a}"]),
)
placeholder_text = raw_text | references
scalars = st.none() | st.booleans() | st.integers() | st.floats() | placeholder_text
markers = st.builds(Unknown, st.text(max_size=3)) | st.builds(Secret, scalars)
nested = st.recursive(
    scalars | markers,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(keys | st.integers(), inner, max_size=4)
        | st.builds(Secret, inner)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(placeholder_text)
def test_parse_only_raises_placeholder_error(text: str) -> None:
    try:
        segments = parse(text)
    except PlaceholderError:
        return
    rebuilt = "".join(s.replace("$", "$$") if isinstance(s, str) else str(s) for s in segments)
    # Re-escaped, the pieces parse back to the same pieces.
    assert _shape(parse(rebuilt)) == _shape(segments)


@settings(max_examples=300, deadline=None)
@given(nested, nested)
def test_find_substitute_lookup_only_raise_placeholder_error(value: Any, data: Any) -> None:
    root = {"a": data, "b": value}
    with contextlib.suppress(PlaceholderError):
        find_references(value)
    with contextlib.suppress(PlaceholderError):
        substitute(value, lambda ref: lookup(root, ref))
