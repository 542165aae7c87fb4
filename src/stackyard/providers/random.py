"""The ``random`` provider: values generated once at create and then kept in state.

Kinds:

- ``random.password``: ``length`` (8..256, default 32) and ``symbols`` (default False). The
  default alphabet is ASCII letters and digits, so the value embeds in a URL or a libpq
  connection string unescaped. ``symbols: true`` adds ``-_.~!*``, every one of which is legal
  unescaped in a URL's userinfo and none of which is a quote, ``$``, ``%``, ``@``, ``:``,
  ``/``, ``?`` or ``#``. Every value holds a lower-case letter, an upper-case letter and a
  digit (and a symbol when ``symbols`` is on), so common password policies accept it.
  Output ``value`` is sensitive.
- ``random.id``: ``length`` (1..64, default 8) lower-case letters and digits after an optional
  ``prefix``. Output ``value`` is not sensitive.

There is no real object: the value lives only in state. ``observe`` therefore reads the
recorded outputs: a recorded ``value`` means the object exists (its observed config is derived
from the value itself, so a changed ``length`` shows as a difference); no recorded value means
it is missing and will be created. Both config fields are ``replace_on_change``: a new value
is made only by replacing the resource, and ``update`` keeps the prior value.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from typing import Any, ClassVar

from stackyard import __version__
from stackyard.providers.api import (
    Applied,
    CreateRequest,
    DeleteRequest,
    KindConfig,
    NamingRule,
    Observed,
    ObserveRequest,
    Provider,
    UpdateRequest,
    config_field,
    replace_fields,
)

LETTERS_DIGITS = string.ascii_letters + string.digits
SYMBOLS = "-_.~!*"
ID_ALPHABET = string.ascii_lowercase + string.digits


class PasswordConfig(KindConfig):
    """Config of ``random.password``."""

    length: int = config_field(
        32, replace_on_change=True, ge=8, le=256, description="Number of characters."
    )
    symbols: bool = config_field(
        False, replace_on_change=True, description="Add the URL-safe symbols -_.~!* ."
    )


class IdConfig(KindConfig):
    """Config of ``random.id``."""

    length: int = config_field(
        8, replace_on_change=True, ge=1, le=64, description="Random characters after the prefix."
    )
    prefix: str = config_field(
        "",
        replace_on_change=True,
        max_length=64,
        pattern=r"^[a-z0-9_-]*$",
        description="Fixed text before the random part.",
    )


def generate_password(length: int, *, symbols: bool) -> str:
    """A password from ``secrets`` holding at least one of each required character class."""
    alphabet = LETTERS_DIGITS + (SYMBOLS if symbols else "")
    classes = [string.ascii_lowercase, string.ascii_uppercase, string.digits]
    if symbols:
        classes.append(SYMBOLS)
    while True:  # rejection sampling keeps the distribution uniform over acceptable values
        value = "".join(secrets.choice(alphabet) for _ in range(length))
        if all(any(c in cls for c in value) for cls in classes):
            return value


def generate_id(length: int, prefix: str = "") -> str:
    """``prefix`` followed by ``length`` random lower-case letters and digits."""
    return prefix + "".join(secrets.choice(ID_ALPHABET) for _ in range(length))


def _recorded_value(outputs: Mapping[str, Any]) -> str | None:
    value = outputs.get("value")
    return value if isinstance(value, str) and value else None


class Password:
    """``random.password``: a secret generated once and kept."""

    name: ClassVar[str] = "random.password"
    config_model: ClassVar[type[KindConfig]] = PasswordConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset({"value"})
    naming: ClassVar[NamingRule] = NamingRule(max_length=128)

    def observe(self, req: ObserveRequest) -> Observed | None:
        """The recorded value, or ``None`` when there is none. No I/O; always safe to repeat."""
        value = _recorded_value(req.outputs)
        if value is None:
            return None
        observed = {"length": len(value), "symbols": any(c in SYMBOLS for c in value)}
        return Observed(config=observed, outputs={"value": value})

    def create(self, req: CreateRequest) -> Applied:
        """Generate a new value. No I/O, so a repeat after a crash simply generates again."""
        cfg = PasswordConfig.model_validate(dict(req.config))
        return Applied(outputs={"value": generate_password(cfg.length, symbols=cfg.symbols)})

    def update(self, req: UpdateRequest) -> Applied:
        """Keep the prior value; generate anew only if a replace-worthy field changed."""
        cfg = PasswordConfig.model_validate(dict(req.config))
        value = _recorded_value(req.prior_outputs)
        if value is None or req.changed & replace_fields(PasswordConfig):
            value = generate_password(cfg.length, symbols=cfg.symbols)
        return Applied(outputs={"value": value})

    def delete(self, req: DeleteRequest) -> None:
        """Nothing to delete: the value lives only in state."""


class RandomId:
    """``random.id``: a short lower-case identifier generated once and kept."""

    name: ClassVar[str] = "random.id"
    config_model: ClassVar[type[KindConfig]] = IdConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    naming: ClassVar[NamingRule] = NamingRule(max_length=128)

    def observe(self, req: ObserveRequest) -> Observed | None:
        """The recorded value, or ``None`` when there is none. No I/O; always safe to repeat."""
        value = _recorded_value(req.outputs)
        if value is None:
            return None
        prefix = str(req.config.get("prefix", ""))
        if not value.startswith(prefix):
            prefix = ""  # the value was made for another prefix: report that as a difference
        observed = {"length": len(value) - len(prefix), "prefix": prefix}
        return Observed(config=observed, outputs={"value": value})

    def create(self, req: CreateRequest) -> Applied:
        """Generate a new value. No I/O, so a repeat after a crash simply generates again."""
        cfg = IdConfig.model_validate(dict(req.config))
        return Applied(outputs={"value": generate_id(cfg.length, cfg.prefix)})

    def update(self, req: UpdateRequest) -> Applied:
        """Keep the prior value; generate anew only if a replace-worthy field changed."""
        cfg = IdConfig.model_validate(dict(req.config))
        value = _recorded_value(req.prior_outputs)
        if value is None or req.changed & replace_fields(IdConfig):
            value = generate_id(cfg.length, cfg.prefix)
        return Applied(outputs={"value": value})

    def delete(self, req: DeleteRequest) -> None:
        """Nothing to delete: the value lives only in state."""


PROVIDER = Provider(
    name="random",
    version=__version__,
    kinds=(Password(), RandomId()),
    description="Random values (passwords, ids) generated once and kept in state.",
)
