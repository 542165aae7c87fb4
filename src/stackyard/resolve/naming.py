"""Deterministic names: of a provider resource (physical) and of a component instance (its base)."""

from __future__ import annotations

import hashlib
import re
import unicodedata

from stackyard.providers.api import NamingRule

HASH_LENGTH = 8
#: The rule ``instance_name`` follows: one every built-in kind accepts as an object name.
INSTANCE_NAMING = NamingRule(max_length=63, allowed="a-z0-9", separator="-")


def identity_hash(*parts: str, length: int = HASH_LENGTH) -> str:
    """A short, stable hex digest of the parts (NUL-separated, so parts cannot run together)."""
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:length]


def sanitise(text: str, rule: NamingRule) -> str:
    """Fold ``text`` to the rule's charset.

    NFKD, ASCII only, lower case; runs of anything else collapse to one separator, with none at
    either end, and the name never starts with a digit.
    """
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    sep = rule.separator
    cleaned = rule.pattern().sub(sep, folded)
    if sep:
        cleaned = re.sub(f"{re.escape(sep)}+", sep, cleaned).strip(sep)
    if not cleaned or not cleaned[0].isalpha():
        cleaned = "s" + (sep + cleaned if cleaned else "")
    return cleaned


def physical_name(
    env: str, uid: str, resource: str, rule: NamingRule, *, installation: str = ""
) -> str:
    """The physical name of one provider resource.

    Readable part first (``<env>-<uid id>-<resource>``, sanitised and truncated), then a hash
    of the raw, unsanitised identity, so two identities that sanitise alike still differ and
    the same identity always gives the same name. The identity includes the installation
    (``StateStore.installation_id``), so two installations sharing a server never compute
    the same name. The result fits ``rule.max_length``.
    """
    parts = (installation, env, uid, resource) if installation else (env, uid, resource)
    uid_id = uid.split("#", 1)[-1]
    return _compose(f"{env} {uid_id} {resource}", identity_hash(*parts), rule)


def instance_name(env: str, uid: str, *, installation: str = "") -> str:
    """The deterministic name base of one component instance: ``${context.name}``.

    Built like ``physical_name`` from the instance's identity alone (``<env>-<uid id>-<hash>``),
    so it is the same on every deploy of the instance, differs between environments,
    instances and installations, and fits the strictest built-in rule (``INSTANCE_NAMING``:
    63 lower-case letters, digits and '-', which PostgreSQL and Redis both accept). A
    component names the objects it creates with it (a role and its database).
    """
    parts = ("instance", installation, env, uid) if installation else ("instance", env, uid)
    uid_id = uid.split("#", 1)[-1]
    return _compose(f"{env} {uid_id}", identity_hash(*parts), INSTANCE_NAMING)


def _compose(text: str, digest: str, rule: NamingRule) -> str:
    """The sanitised, truncated ``text``, then the separator and ``digest``, within the rule."""
    readable = sanitise(text, rule)
    room = rule.max_length - len(digest) - len(rule.separator)
    if room < 1:
        return digest[: rule.max_length]
    readable = readable[:room].rstrip(rule.separator) if rule.separator else readable[:room]
    return f"{readable}{rule.separator}{digest}"
