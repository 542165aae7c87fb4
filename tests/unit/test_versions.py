"""SemVer, ranges and the version rules of publishing, as table tests with a reason per row."""

from __future__ import annotations

import pytest

from stackyard.model.versions import Published, Range, Version, check_new_version, required_inputs

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("lower", "higher", "reason"),
    [
        ("1.0.0", "1.0.1", "patch"),
        ("1.9.0", "1.10.0", "minor compares numerically"),
        ("1.0.0-rc.1", "1.0.0", "a release follows its pre-releases"),
        ("1.0.0-alpha", "1.0.0-alpha.1", "a longer pre-release wins when the prefix is equal"),
        ("1.0.0-2", "1.0.0-10", "numeric identifiers compare numerically"),
        ("1.0.0-9", "1.0.0-a", "numeric identifiers sort before alphanumeric ones"),
    ],
    ids=lambda v: str(v),
)
def test_precedence(lower: str, higher: str, reason: str) -> None:
    assert Version.parse(lower) < Version.parse(higher), reason


def test_build_metadata_is_ignored_in_precedence() -> None:
    assert Version.parse("1.0.0+a") == Version.parse("1.0.0+b")


@pytest.mark.parametrize("text", ["1.0", "01.0.0", "1.0.0-", "v1.0.0", "1.0.0-01", ""], ids=repr)
def test_invalid_versions(text: str) -> None:
    with pytest.raises(ValueError, match="SemVer"):
        Version.parse(text)


RANGES = [
    ("^1.4", "1.9.3", True, "caret allows minor and patch"),
    ("^1.4", "2.0.0", False, "caret stops at the next major"),
    ("^1.4", "2.0.0-rc.1", False, "the next major's pre-releases are excluded"),
    ("^0.3", "0.3.9", True, "below 1.0 caret allows patches"),
    ("^0.3", "0.4.0", False, "below 1.0 caret stops at the next minor"),
    ("~1.4", "1.4.7", True, "tilde allows patches"),
    ("~1.4", "1.5.0", False, "tilde stops at the next minor"),
    (">=1.2 <2", "1.2.0", True, "inclusive lower bound"),
    (">=1.2 <2", "2.0.0", False, "exclusive upper bound"),
    ("1.x", "1.99.0", True, "x-range"),
    ("*", "7.1.0", True, "anything"),
    ("*", "7.1.0-beta", False, "pre-releases need to be named"),
    (">=1.0.0-rc.1", "1.0.0-rc.2", True, "a named pre-release core admits its pre-releases"),
    ("1.4.2", "1.4.2", True, "exact"),
    ("1.4.2", "1.4.3", False, "exact means exact"),
]


@pytest.mark.parametrize(
    ("rng", "version", "ok", "reason"), RANGES, ids=[f"{r[0]}~{r[1]}" for r in RANGES]
)
def test_ranges(rng: str, version: str, ok: bool, reason: str) -> None:
    assert Range.parse(rng).matches(Version.parse(version)) is ok, reason


def test_best_picks_the_highest_match() -> None:
    versions = [Version.parse(v) for v in ["1.0.0", "1.4.0", "1.9.9", "2.0.0"]]
    assert str(Range.parse("^1").best(versions)) == "1.9.9"


def _pub(
    version: str,
    *,
    provides: str = "postgres",
    required: set[str] | None = None,
    outputs: set[str] | None = None,
) -> Published:
    return Published(
        Version.parse(version),
        provides,
        frozenset(required or set()),
        frozenset(outputs if outputs is not None else {"host", "port"}),
    )


RULES = [
    ("first", _pub("1.0.0"), [], None, "the first version is always fine"),
    ("patch-ok", _pub("1.0.1"), [_pub("1.0.0")], None, "a compatible patch"),
    (
        "same",
        _pub("1.0.0"),
        [_pub("1.0.0")],
        "Version already published",
        "published versions are immutable",
    ),
    (
        "lower",
        _pub("0.9.0"),
        [_pub("1.0.0")],
        "Version not greater than published",
        "must be greater",
    ),
    (
        "minor-adds-required",
        _pub("1.1.0", required={"size"}),
        [_pub("1.0.0")],
        "Breaking change in a non-major release",
        "a minor release adds no required input",
    ),
    (
        "patch-removes-output",
        _pub("1.0.1", outputs={"host"}),
        [_pub("1.0.0")],
        "Breaking change in a non-major release",
        "a patch release removes no output",
    ),
    (
        "minor-changes-type",
        _pub("1.1.0", provides="mysql"),
        [_pub("1.0.0")],
        "Breaking change in a non-major release",
        "a minor release changes no provided type",
    ),
    (
        "major-may-break",
        _pub("2.0.0", provides="mysql", required={"size"}, outputs=set()),
        [_pub("1.0.0")],
        None,
        "a major release may do all of those",
    ),
    (
        "compared-with-latest",
        _pub("1.3.0"),
        [_pub("1.0.0"), _pub("1.2.0", outputs={"host", "port", "url"})],
        "Breaking change in a non-major release",
        "compatibility is judged against the latest published version",
    ),
]


@pytest.mark.parametrize(
    ("new", "published", "summary", "reason"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
def test_version_rules(
    new: Published, published: list[Published], summary: str | None, reason: str
) -> None:
    diags = check_new_version("pg", new, published)
    if summary is None:
        assert diags == [], reason
    else:
        assert summary in [d.summary for d in diags], reason


def test_required_inputs_ignore_defaults() -> None:
    schema = {
        "properties": {"a": {"type": "string"}, "b": {"type": "string", "default": "x"}},
        "required": ["a", "b"],
    }
    assert required_inputs(schema) == {"a"}
