"""Deterministic physical names: (environment, uid, resource name) → a safe, unique backend name."""

from __future__ import annotations

import hashlib
import re
import unicodedata

from stackyard.providers.api import NamingRule

HASH_LENGTH = 8


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
    digest = identity_hash(*parts)
    uid_id = uid.split("#", 1)[-1]
    readable = sanitise(f"{env} {uid_id} {resource}", rule)
    room = rule.max_length - len(digest) - len(rule.separator)
    if room < 1:
        return digest[: rule.max_length]
    readable = readable[:room].rstrip(rule.separator) if rule.separator else readable[:room]
    return f"{readable}{rule.separator}{digest}"
