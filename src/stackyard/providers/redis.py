"""The ``redis`` provider: ACL users confined to a key and channel prefix (redis-py, RESP).

Ownership: Redis users cannot carry comments, so the label lives in the hash
``stackyard:acl-owners`` (field: user name, value: ``stackyard:<installation>:<env>:<address>``),
written in the same MULTI/EXEC as the user. A user without a label (another tool's, or one
whose label ``FLUSHALL`` wiped) is never adopted, changed or deleted.
"""

from __future__ import annotations

import atexit
import hashlib
import re
import threading
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, suppress
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn
from urllib.parse import urlsplit

import pydantic

from stackyard.errors import ForeignObjectError, ProviderPermanentError
from stackyard.lazy import lazy
from stackyard.providers import timeouts
from stackyard.providers.api import (
    Applied,
    CreateRequest,
    DeleteRequest,
    KindConfig,
    Labelled,
    NamingRule,
    Observed,
    ObserveRequest,
    Provider,
    ResourceMeta,
    UpdateRequest,
    config_field,
)
from stackyard.providers.boundary import translate

if TYPE_CHECKING:
    import redis
    import redis.exceptions
else:  # imported on first use: naming and planning never talk to the server
    redis = lazy("redis")

__all__ = [
    "LABELS_KEY",
    "PASSWORD_DRIFTED",
    "PROVIDER",
    "RULES_KEY",
    "AclUserConfig",
    "AclUserKind",
    "Clients",
    "make_provider",
    "provider_errors",
]

VERSION = "0.1.0"
LABELS_KEY = "stackyard:acl-owners"
#: Field: user name; value: the command rules as Redis reported them right after an apply.
RULES_KEY = "stackyard:acl-rules"
DEFAULT_COMMANDS = "+@all -@admin -@dangerous"
#: Applied after ``commands`` on every user, whatever ``commands`` says: no rule a workload
#: writes can reach ACL, CONFIG, FLUSHALL, SHUTDOWN... Only ``platform_commands`` (set by a
#: platform binding, never by a workload's params) comes after it.
CONFINEMENT = ("-@admin", "-@dangerous")
#: Leads the rules recorded in ``RULES_KEY``: rules recorded without it were applied before
#: the confinement existed, so observe reports them as drift and the next deploy re-applies.
RULES_TAG = "confined:"
#: What observe reports as the password when the user's hashes do not match the desired one.
PASSWORD_DRIFTED = "<password changed outside stackyard>"  # noqa: S105  (a marker)
SOCKET_TIMEOUT_SECONDS = timeouts.DEFAULT_OPERATION  # STACKYARD_BACKEND_TIMEOUT overrides

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
# ``+@category``, ``-@category``, ``+command`` or ``+command|subcommand``. No key, channel,
# password or flag rule (``~``, ``&``, ``>``, ``#``, ``on``, ``nopass``, ``reset``...) fits.
COMMAND_PATTERN = re.compile(
    r"^[+-](?:@[a-z][a-z-]{0,31}|[a-z][a-z_.]{0,63}(?:\|[a-z][a-z_-]{0,63})?)$"
)
NAMING = NamingRule(max_length=64, allowed="a-z0-9", separator="-")
_UNUSED_PASSWORD = hashlib.sha256(b"stackyard: a swept user's delete needs no password").hexdigest()


def _check_name(value: str) -> str:
    if value and not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            "a user name is 1-128 letters, digits, '_', '.', ':' or '-', starting with a "
            "letter or digit"
        )
    return value


def _check_prefix(value: str) -> str:
    if value and not PREFIX_PATTERN.fullmatch(value):
        raise ValueError("a prefix is 1-128 letters, digits, '_', '.', ':' or '-' (no globs)")
    return value


def command_rules(commands: str) -> list[str]:
    """The command rules of ``commands``, one per whitespace-separated token, validated."""
    tokens = commands.split()
    if not tokens:
        raise ValueError("at least one command rule is needed, e.g. '+@read'")
    bad = [t for t in tokens if not COMMAND_PATTERN.fullmatch(t)]
    if bad:
        raise ValueError(
            f"{len(bad)} command rule(s) are not of the form +@category, -@category, "
            "+command or +command|subcommand"
        )
    return tokens


def _check_commands(value: str) -> str:
    return " ".join(command_rules(value))


def all_command_rules(cfg: AclUserConfig) -> list[str]:
    """Every command rule of the user: ``commands``, the confinement, ``platform_commands``."""
    extra = command_rules(cfg.platform_commands) if cfg.platform_commands else []
    return [*command_rules(cfg.commands), *CONFINEMENT, *extra]


class AclUserConfig(KindConfig):
    """Config of ``redis.acl_user``."""

    server: str = config_field(
        ..., sensitive=True, min_length=1, description="Admin URL of the Redis server."
    )
    name: str = config_field(
        "", replace_on_change=True, description="User name; empty means the physical name."
    )
    password: str = config_field(..., sensitive=True, min_length=1)
    prefix: str = config_field("", description="Key and channel prefix; empty means '<name>:'.")
    commands: str = config_field(
        DEFAULT_COMMANDS,
        description="Command rules, space-separated; '-@admin -@dangerous' always follow them.",
    )
    platform_commands: str = config_field(
        "",
        description="Rules applied after the confinement (a platform binding's, never a "
        "workload's); empty means none.",
    )
    enabled: bool = config_field(True)

    _name = pydantic.field_validator("name")(_check_name)
    _prefix = pydantic.field_validator("prefix")(_check_prefix)
    _commands = pydantic.field_validator("commands")(_check_commands)

    @pydantic.field_validator("platform_commands")
    @classmethod
    def _platform(cls, value: str) -> str:
        return _check_commands(value) if value.strip() else ""


def _transient(exc: Exception) -> bool:
    # Lost connections and timeouts may pass; refused authentication and error replies
    # (NOPERM, ERR...) will not.
    return isinstance(
        exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError
    ) and not isinstance(exc, redis.exceptions.AuthenticationError)


def _note(exc: Exception) -> str:
    if isinstance(exc, redis.exceptions.TimeoutError):
        return f" (the server did not answer in time; limit: {timeouts.OPERATION_ENV})"
    return ""


def provider_errors(address: str, *, secrets: Iterable[str] = ()) -> AbstractContextManager[None]:
    """The one boundary where redis-py exceptions become stackyard's (``boundary.translate``).

    Lost connections, timeouts and a loading server are transient; refused authentication,
    error replies (``NOPERM``, ``ERR``...) and anything else are permanent. Messages are
    redacted of ``secrets``, and the cause is dropped when its text held one.
    """
    return translate(
        address,
        service="Redis",
        catch=redis.exceptions.RedisError,
        transient=_transient,
        note=_note,
        secrets=secrets,
    )


def _url_secrets(url: str) -> list[str]:
    out = [url]
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        out.append(password)
    return out


class Clients:
    """redis-py clients, one per server URL, shared by threads (each has its own pool)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, redis.Redis] = {}

    def get(self, url: str) -> redis.Redis:
        """The client for ``url``."""
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                limits = timeouts.current()
                try:
                    client = redis.Redis.from_url(
                        url,
                        decode_responses=True,
                        socket_connect_timeout=limits.connect,
                        socket_timeout=limits.operation,
                        socket_keepalive=True,
                        health_check_interval=30,
                    )
                except ValueError:
                    # The parser's messages can quote the URL, which may hold a password.
                    raise ProviderPermanentError("The server is not a valid Redis URL") from None
                self._clients[url] = client
            return client

    def close(self) -> None:
        """Close every client's connections."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.close()


def _as_dict(reply: Any) -> dict[str, Any] | None:
    """ACL GETUSER's reply as a dict (RESP3 gives a map, RESP2 a flat list)."""
    if reply is None:
        return None
    if isinstance(reply, Mapping):
        return dict(reply)
    items = list(reply)
    return {str(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _text(value: Any) -> str:
    """A reply field as one string (lists of patterns are space-joined)."""
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return str(value) if value is not None else ""


class AclUserKind:
    """``redis.acl_user``: ``~<prefix>*``, ``&<prefix>*``, a command set and a password."""

    name: ClassVar[str] = "redis.acl_user"
    config_model: ClassVar[type[KindConfig]] = AclUserConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    naming: ClassVar[NamingRule] = NAMING

    def __init__(self, clients: Clients) -> None:
        self._clients = clients

    def _parse(self, meta: ResourceMeta, config: Mapping[str, Any]) -> AclUserConfig:
        try:
            return AclUserConfig.model_validate(dict(config))
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ProviderPermanentError(
                f"Invalid config: {problems}", address=meta.address
            ) from None

    def _resolve(self, meta: ResourceMeta, cfg: AclUserConfig) -> tuple[str, str, list[str]]:
        name = cfg.name or meta.physical_name
        if not NAME_PATTERN.fullmatch(name):
            _refuse(meta, "The physical name is not a valid Redis user name")
        prefix = cfg.prefix or f"{name}:"
        if not PREFIX_PATTERN.fullmatch(prefix):
            _refuse(meta, "The derived key prefix is not valid; set 'prefix' explicitly")
        digest = _sha256(cfg.password)
        return name, prefix, [*_url_secrets(cfg.server), cfg.password, digest]

    def _rules(self, cfg: AclUserConfig, prefix: str) -> list[str]:
        # Every rule is its own argument: nothing the user wrote is ever split by Redis.
        return [
            "reset",
            # Redis 6.2 defaults to allchannels and refuses '&pattern' on top of it; 7 resets it.
            "resetchannels",
            "on" if cfg.enabled else "off",
            f"#{_sha256(cfg.password)}",
            f"~{prefix}*",
            f"&{prefix}*",
            *all_command_rules(cfg),
        ]

    def _ownership(
        self, meta: ResourceMeta, name: str, label: str | None, explicit: bool
    ) -> tuple[bool, str]:
        if label == meta.label:
            return True, ""
        if label is None:  # SETUSER and its label are one MULTI/EXEC: no crash leaves this
            return False, f"'{name}' exists without a stackyard label"
        return False, f"'{name}' is labelled {label!r}, not {meta.label!r}"

    def sweep_scope(self, config: Mapping[str, Any]) -> str:
        """The server URL: users are listed once per server."""
        return str(config.get("server", ""))

    def labelled(self, config: Mapping[str, Any], prefix: str, *, limit: int) -> list[Labelled]:
        """Users whose entry in ``LABELS_KEY`` starts with ``prefix`` (one HSCAN); no writes.

        Each comes with a delete config keeping the user's key prefix, read from its ACL.
        """
        server = str(config.get("server", ""))
        found: list[Labelled] = []
        with provider_errors("sweep", secrets=_url_secrets(server)):
            client = self._clients.get(server)
            for name, label in client.hscan_iter(LABELS_KEY, count=500):
                if len(found) >= limit:
                    break
                if not str(label).startswith(prefix):
                    continue
                pipe = client.pipeline(transaction=False)
                _queue(pipe, "ACL", "GETUSER", str(name))
                user = _as_dict(pipe.execute()[0])
                keys = _text((user or {}).get("keys"))
                key_prefix = keys[1:-1] if keys.startswith("~") and keys.endswith("*") else ""
                if not PREFIX_PATTERN.fullmatch(key_prefix):
                    key_prefix = ""
                # a delete never uses the password; a placeholder that cannot occur in any
                # message (a '-' was masked as a secret, turning every hyphen into '***')
                delete = {"server": server, "password": _UNUSED_PASSWORD, "prefix": key_prefix}
                found.append(Labelled(str(name), str(label), delete))
        return found

    def _read(
        self, client: redis.Redis, name: str
    ) -> tuple[dict[str, Any] | None, str | None, str | None]:
        """The user, its label and its applied command rules, in one round trip."""
        pipe = client.pipeline(transaction=False)
        _queue(pipe, "ACL", "GETUSER", name)
        pipe.hget(LABELS_KEY, name)
        pipe.hget(RULES_KEY, name)
        user, label, rules = pipe.execute()
        return _as_dict(user), label, rules

    def observe(self, req: ObserveRequest) -> Observed | None:
        """Read the user and its label with one pipelined round trip; no writes.

        Passwords are compared by SHA-256; key and channel patterns against the prefix; the
        command rules against what Redis reported right after the last apply (kept in
        ``RULES_KEY``, and in output ``acl``), since Redis rewrites rules (``-@admin``
        disappears under ``-@dangerous``), so the configured text cannot be compared.
        """
        cfg = self._parse(req.meta, req.config)
        name, prefix, secrets = self._resolve(req.meta, cfg)
        with provider_errors(req.meta.address, secrets=secrets):
            user, label, applied = self._read(self._clients.get(cfg.server), name)
        if user is None and label == _tombstone(req.meta):
            # A delete stopped after ACL DELUSER: keys may remain under the prefix, so the
            # object is not gone yet; a re-run delete finishes it, a deploy re-creates it.
            return Observed(
                config={
                    **cfg.model_dump(include={"name", "prefix", "commands", "enabled"}),
                    "password": PASSWORD_DRIFTED,
                },
                outputs=self._outputs(cfg, name, prefix, ""),
                health="degraded",
                detail=f"a delete of '{name}' is unfinished: keys may remain under its prefix",
            )
        if user is None:
            return None
        managed, why = self._ownership(req.meta, name, label, bool(cfg.name))
        flags = [str(f) for f in user.get("flags", [])]
        passwords = [str(p) for p in user.get("passwords", [])]
        keys, channels = _text(user.get("keys")), _text(user.get("channels"))
        commands = _text(user.get("commands"))
        selectors = user.get("selectors") or []
        if applied is not None:
            same_commands = applied == f"{RULES_TAG}{commands}"
        elif req.outputs.get("acl") is not None:  # FLUSHALL wiped the hash: the state's copy
            same_commands = commands == req.outputs.get("acl")
        else:
            same_commands = sorted(commands.split()) == sorted(all_command_rules(cfg))
        same_commands = same_commands and not selectors
        same_prefix = keys == f"~{prefix}*" and channels == f"&{prefix}*"
        same_password = passwords == [_sha256(cfg.password)] and "nopass" not in flags
        return Observed(
            config={
                "name": cfg.name,
                "password": cfg.password if same_password else PASSWORD_DRIFTED,
                "prefix": cfg.prefix if same_prefix else f"{keys} {channels}".strip(),
                "commands": cfg.commands if same_commands else commands,
                "enabled": "on" in flags,
            },
            outputs=self._outputs(cfg, name, prefix, commands),
            managed=managed,
            detail=why,
        )

    def create(self, req: CreateRequest) -> Applied:
        """Create the user (or converge ours) with its label, atomically (MULTI/EXEC).

        ``ACL SETUSER <name> reset ...`` sets every rule from scratch, so a repeat call
        leaves the user exactly as it was. A user labelled by another owner is refused.
        """
        return self._ensure(req.meta, req.config)

    def update(self, req: UpdateRequest) -> Applied:
        """Re-apply every rule (``reset`` first); safe to repeat."""
        return self._ensure(req.meta, req.config)

    def _ensure(self, meta: ResourceMeta, config: Mapping[str, Any]) -> Applied:
        cfg = self._parse(meta, config)
        name, prefix, secrets = self._resolve(meta, cfg)
        with provider_errors(meta.address, secrets=secrets):
            client = self._clients.get(cfg.server)
            user, label, _ = self._read(client, name)
            if user is not None:
                managed, why = self._ownership(meta, name, label, bool(cfg.name))
                if not managed:
                    _refuse_foreign(meta, name, why)
            pipe = client.pipeline(transaction=True)
            _queue(pipe, "ACL", "SETUSER", name, *self._rules(cfg, prefix))
            pipe.hset(LABELS_KEY, name, meta.label)
            _queue(pipe, "ACL", "GETUSER", name)
            _, _, after = pipe.execute()
            commands = _text((_as_dict(after) or {}).get("commands"))
            # A second, tiny write: the reported rules are only known after SETUSER.
            client.hset(RULES_KEY, name, f"{RULES_TAG}{commands}")
            _save_acl(client)
        return Applied(outputs=self._outputs(cfg, name, prefix, commands), physical_id=name)

    def delete(self, req: DeleteRequest) -> None:
        """Delete the user, then the keys under its prefix, then its label; missing is
        success, foreign refused. Safe to repeat, and finished by a re-run after a kill.

        1. One MULTI/EXEC: ``ACL DELUSER`` (which also disconnects the user's clients, so no
           key can be written under the prefix any more), and the label becomes a tombstone
           (``deleting:<label>``);
        2. the keys under the prefix are unlinked (``SCAN`` + ``UNLINK`` in batches);
        3. the tombstone goes, last.

        While the tombstone is there, ``observe`` reports the user as existing (degraded), so
        recovery never records a half-done delete as finished: the re-run deletes again.
        """
        cfg = self._parse(req.meta, req.config)
        name, prefix, secrets = self._resolve(req.meta, cfg)
        tombstone = _tombstone(req.meta)
        with provider_errors(req.meta.address, secrets=secrets):
            client = self._clients.get(cfg.server)
            user, label, _ = self._read(client, name)
            if user is None and label not in (req.meta.label, tombstone):
                if label is None:  # gone: finish a delete that stopped before its keys
                    _drop_keys(client, prefix)
                return
            if user is not None:
                managed, why = self._ownership(req.meta, name, label, bool(cfg.name))
                if not managed:
                    _refuse_foreign(req.meta, name, why)
            pipe = client.pipeline(transaction=True)
            _queue(pipe, "ACL", "DELUSER", name)
            pipe.hset(LABELS_KEY, name, tombstone)
            pipe.hdel(RULES_KEY, name)
            pipe.execute()
            _save_acl(client)
            _drop_keys(client, prefix)
            client.hdel(LABELS_KEY, name)  # the tombstone goes last

    @staticmethod
    def _outputs(cfg: AclUserConfig, name: str, prefix: str, acl: str) -> dict[str, Any]:
        parts = urlsplit(cfg.server)
        try:
            port = parts.port or 6379
        except ValueError:
            port = 6379
        return {
            "username": name,
            "prefix": prefix,
            "host": parts.hostname or "",
            "port": port,
            "acl": acl,
        }


def _drop_keys(client: Any, prefix: str, *, batch: int = 500) -> None:
    """Unlink every key under ``prefix`` (glob characters in it are escaped)."""
    pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + "*"
    keys: list[Any] = []
    for key in client.scan_iter(match=pattern, count=batch):
        keys.append(key)
        if len(keys) >= batch:
            client.unlink(*keys)
            keys = []
    if keys:
        client.unlink(*keys)


def _save_acl(client: Any) -> None:
    """``ACL SAVE`` on a server with an ACL file (a local server), so its users survive a
    restart; a server without one refuses, and keeps its users its own way."""
    with suppress(redis.exceptions.ResponseError):
        client.execute_command("ACL", "SAVE")


def _tombstone(meta: ResourceMeta) -> str:
    """The label a user's entry carries between ``ACL DELUSER`` and the end of its keys."""
    return f"deleting:{meta.label}"


def _queue(pipe: Any, *args: str) -> None:
    """Queue one raw command on a pipeline (redis-py leaves ``execute_command`` untyped)."""
    pipe.execute_command(*args)


def _sha256(password: str) -> str:
    return hashlib.sha256(password.encode("utf-8", "surrogatepass")).hexdigest()


def _refuse(meta: ResourceMeta, message: str) -> NoReturn:
    raise ProviderPermanentError(message, address=meta.address)


def _refuse_foreign(meta: ResourceMeta, name: str, why: str) -> NoReturn:
    raise ForeignObjectError(
        f"The Redis user '{name}' exists and is not managed by this environment ({why})",
        address=meta.address,
        hint="It is not this installation's user: remove or rename it, or choose another "
        "name. Taking over an existing object ('stackyard adopt') is not available yet.",
    )


def make_provider(clients: Clients | None = None) -> Provider:
    """A redis provider whose kinds share one client cache."""
    return Provider(
        name="redis",
        version=VERSION,
        kinds=(AclUserKind(clients if clients is not None else Clients()),),
        description="Redis ACL users confined to a key and channel prefix (redis-py).",
        parallelism=10,
    )


_CLIENTS = Clients()
atexit.register(_CLIENTS.close)

#: The entry point ``stackyard.providers: redis``.
PROVIDER = make_provider(_CLIENTS)
