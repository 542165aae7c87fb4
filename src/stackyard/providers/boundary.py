"""The one error boundary of the providers: a client library's exceptions become stackyard's.

Each provider names what its client raises, how to read it and which failures retrying can
cure; the rest (redaction of secrets, dropping a cause whose text held one, transient or
permanent) is the same for all of them and lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from stackyard.errors import ProviderPermanentError, ProviderTransientError

__all__ = ["redact", "translate"]


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***`` (longest first, so parts go too)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


@contextmanager
def translate(
    address: str,
    *,
    service: str,
    catch: type[Exception] | tuple[type[Exception], ...],
    transient: Callable[[Exception], bool],
    describe: Callable[[Exception], str] = str,
    note: Callable[[Exception], str] = lambda _exc: "",
    secrets: Iterable[str] = (),
) -> Iterator[None]:
    """Raise what ``catch`` lets through as ``ProviderTransientError`` (when ``transient``
    says retrying may help) or ``ProviderPermanentError``, for ``address``.

    The message is ``"<service>: <describe(exc)><note(exc)>"`` with ``secrets`` redacted.
    When the client's text held a secret, the cause is not chained either, so that no
    traceback can leak it.
    """
    try:
        yield
    except catch as exc:
        secret_list = [s for s in secrets if s]
        raw = f"{describe(exc)}{note(exc)}"
        clean = redact(raw, secret_list)
        # a client library wraps lower errors: a secret anywhere in the chain keeps it unchained
        leaked = clean != raw or any(
            s in f"{link}{link.args!r}" for link in _chain(exc) for s in secret_list
        )
        error_type = ProviderTransientError if transient(exc) else ProviderPermanentError
        error = error_type(f"{service}: {clean}", address=address)
        if leaked:
            raise error from None
        raise error from exc


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it was raised from or during, as a traceback would print them."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__
