"""The providers' one error boundary: transient or permanent, secrets redacted, no leaky cause."""

from __future__ import annotations

import pytest

from stackyard.errors import ProviderPermanentError, ProviderTransientError
from stackyard.providers.boundary import redact, translate

pytestmark = pytest.mark.unit


class _Lost(Exception):
    pass


def _boundary(secrets: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    return translate(
        "app/db",
        service="Thing",
        catch=(_Lost, ValueError),
        transient=lambda exc: isinstance(exc, _Lost),
        note=lambda exc: " (try later)" if isinstance(exc, _Lost) else "",
        secrets=secrets,
    )


def test_redact_replaces_longest_secrets_first() -> None:
    assert redact("pw=hunter2 url=u:hunter2@h", ["hunter2", "u:hunter2@h", ""]) == "pw=*** url=***"


def test_transient_failures_keep_their_cause() -> None:
    with pytest.raises(ProviderTransientError) as info, _boundary():
        raise _Lost("connection reset")
    assert info.value.message == "Thing: connection reset (try later)"
    assert info.value.address == "app/db"
    assert isinstance(info.value.__cause__, _Lost)


def test_a_cause_whose_text_held_a_secret_is_dropped() -> None:
    with pytest.raises(ProviderPermanentError) as info, _boundary(("s3cret",)):
        raise ValueError("password s3cret refused")
    assert info.value.message == "Thing: password *** refused"
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_what_is_not_caught_passes_through() -> None:
    with pytest.raises(KeyError), _boundary():
        raise KeyError("a bug")


def test_a_secret_deeper_in_the_chain_drops_the_cause_too() -> None:
    """A client library wraps the lower error whose text held the secret; ``--debug`` prints
    the whole chain, so the outer text being clean is not enough."""
    with pytest.raises(ProviderTransientError) as info, _boundary(("s3cret",)):
        try:
            raise OSError("auth s3cret rejected by server")
        except OSError as low:
            raise _Lost("connection failed") from low
    assert info.value.message == "Thing: connection failed (try later)"
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_note_is_redacted_too() -> None:
    with (
        pytest.raises(ProviderPermanentError) as info,
        translate(
            "app/db",
            service="Thing",
            catch=ValueError,
            transient=lambda _e: False,
            note=lambda exc: f" (it said {exc.args[0]})",
            secrets=("s3cret",),
        ),
    ):
        raise ValueError("s3cret")
    assert "s3cret" not in info.value.message
