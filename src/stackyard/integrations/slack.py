"""Slack slash commands: the request signature (v0), the map from Slack users to stackyard
users, the command line (``/stackyard env create NAME --from PARENT --ttl 4h`` ...), the
service calls each command makes as the mapped user, and the answers in Slack's message
format.

Nothing here decides who may do what: each command calls the service function the API route
of the same operation calls (``views``, ``inspect``, ``lifecycle``, ``approvals``, and the
jobs' ``admission``), as the mapped stackyard user, so RBAC, policies and audit apply as
they do over the API. The commands that change something, and every refusal, add a
``chat.command`` audit event whose detail says ``via: slack`` and who asked in Slack.
The HTTP side (reading the body, the acknowledgement, following a job, posting to the
``response_url``) is the API's (``api/routes/integrations.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from stackyard.errors import InvalidInputError, PermissionDeniedError, PolicyDeniedError
from stackyard.identity.errors import NotAuthenticated
from stackyard.jobs.model import JobStatus
from stackyard.model.status import AuditResult, DeploymentStatus

if TYPE_CHECKING:
    from stackyard.environments.workspace import Workspace

__all__ = [
    "MAX_BODY",
    "Command",
    "JobRequest",
    "Origin",
    "Reply",
    "SlackConfig",
    "admit",
    "check_response_url",
    "error_reply",
    "job_reply",
    "misconfigured_reply",
    "note",
    "parse_command",
    "parse_users",
    "run",
    "sign",
    "unmapped_reply",
    "usage_reply",
    "verify",
]

SIGNING_SECRET_ENV = "STACKYARD_SLACK_SIGNING_SECRET"  # noqa: S105 (a variable's name)
USERS_ENV = "STACKYARD_SLACK_USERS"
USERS_FILE_ENV = "STACKYARD_SLACK_USERS_FILE"
ALLOW_LOOPBACK_ENV = "STACKYARD_SLACK_ALLOW_LOOPBACK"
#: How far a request's timestamp may be from the server's clock (Slack's own advice).
MAX_SKEW_S = 300
#: The largest slash-command body read (bytes): Slack's are well under 8 KiB.
MAX_BODY = 16 * 1024
#: The only host a ``response_url`` may name (unless loopback is allowed, for tests).
RESPONSE_HOST = "hooks.slack.com"
#: The audit action of a command run from chat.
AUDIT_ACTION = "chat.command"

_SLACK_ID = re.compile(r"^[A-Z0-9]{1,32}$")
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}$")
_ARG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
#: Slack's limits: 3000 characters in a section's text, 50 blocks in a message.
_SECTION_MAX = 2900
_BLOCKS_MAX = 40


# -- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlackConfig:
    """The server's Slack settings, from its environment: the signing secret (never shown),
    the user map (``T123:U456`` or ``U456`` -> stackyard user), whether a ``response_url``
    may be a loopback address (tests only), and what is wrong with the user map, if anything
    (``problem``: the map is then empty, and every user is refused until it is fixed)."""

    signing_secret: str = field(repr=False)
    users: Mapping[str, str] = field(default_factory=dict)
    allow_loopback: bool = False
    problem: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SlackConfig | None:
        """The settings in ``environ`` (None: no signing secret, the integration is off).

        The user map is ``STACKYARD_SLACK_USERS`` and the file ``STACKYARD_SLACK_USERS_FILE``
        names (one entry per line or comma); the variable's entries win.
        """
        secret = environ.get(SIGNING_SECRET_ENV, "").strip()
        if not secret:
            return None
        loopback = environ.get(ALLOW_LOOPBACK_ENV, "").strip().lower() in ("1", "true", "yes")
        users: dict[str, str] = {}
        file = environ.get(USERS_FILE_ENV, "").strip()
        try:
            if file:
                try:
                    text = Path(file).expanduser().read_text(encoding="utf-8")
                except OSError as exc:
                    raise InvalidInputError(
                        f"Cannot read the Slack user map {file}: {exc.strerror}"
                    ) from None
                users.update(parse_users(text, source=file))
            users.update(parse_users(environ.get(USERS_ENV, ""), source=USERS_ENV))
        except InvalidInputError as exc:
            return cls(secret, {}, loopback, exc.message)
        return cls(secret, users, loopback)

    def user(self, team_id: str, user_id: str) -> str | None:
        """The stackyard user ``user_id`` of workspace ``team_id`` acts as (None: unmapped)."""
        return self.users.get(f"{team_id}:{user_id}") or self.users.get(user_id)


def parse_users(text: str, *, source: str) -> dict[str, str]:
    """``T123:U456=alice, U789=bob`` (commas or lines; ``#`` starts a comment) as a map."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        for entry in line.split("#", 1)[0].split(","):
            item = entry.strip()
            if not item:
                continue
            key, sep, user = (p.strip() for p in item.partition("="))
            ids = key.split(":")
            if not sep or len(ids) > 2 or not all(_SLACK_ID.match(i) for i in ids):
                raise InvalidInputError(
                    f"Invalid Slack user map entry '{item[:60]}' in {source}",
                    hint="Write TEAM_ID:USER_ID=username or USER_ID=username (Slack ids are "
                    "upper-case letters and digits), separated by commas or lines.",
                )
            if not _USER.match(user):
                raise InvalidInputError(
                    f"Invalid stackyard user '{user[:60]}' in {source}",
                    hint="A user name is letters, digits and . _ @ + - (as in API tokens).",
                )
            out[key] = user
    return out


# -- the request signature ---------------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 signature of ``body`` sent at ``timestamp``: ``v0=<hex HMAC-SHA256>``."""
    base = b"v0:" + timestamp.encode("ascii") + b":" + body
    return "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def verify(
    secret: str, *, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> None:
    """Refuse (``NotAuthenticated``) a request whose signature does not verify or whose
    timestamp is more than five minutes from ``now``; the message never says which."""
    refused = NotAuthenticated(
        hint="A Slack request carries X-Slack-Request-Timestamp (within 5 minutes of the "
        "server's clock) and X-Slack-Signature (v0, HMAC-SHA256 with the app's signing "
        "secret); this one's do not verify."
    )
    ts = (timestamp or "").strip()
    if not ts.isdigit() or len(ts) > 12 or not signature:
        raise refused
    if abs(now - int(ts)) > MAX_SKEW_S:
        raise refused
    expected = sign(secret, ts, body).encode("ascii")
    if not hmac.compare_digest(expected, signature.strip().encode("utf-8", "replace")):
        raise refused


def check_response_url(url: str, *, allow_loopback: bool) -> str:
    """``url`` if results may be posted to it: ``https://hooks.slack.com/...``, or (when
    ``allow_loopback``) an http(s) URL on a loopback address."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    fine = parts.scheme == "https" and host == RESPONSE_HOST
    if allow_loopback and parts.scheme in ("http", "https"):
        fine = fine or host == "localhost" or _loopback(host)
    if not fine or parts.username or parts.password:
        raise InvalidInputError(
            "Invalid response_url",
            hint=f"Slack sends https://{RESPONSE_HOST}/...; {ALLOW_LOOPBACK_ENV}=1 also "
            "allows loopback addresses (tests).",
        )
    return url


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- commands ----------------------------------------------------------------------------------

#: Each verb and the options it takes (``--from``, ``--ttl`` ...).
_OPTIONS: Mapping[str, frozenset[str]] = {
    "env.create": frozenset({"from", "ttl", "type", "owner"}),
    "env.extend": frozenset({"ttl"}),
}
#: The verbs that run as jobs, with their job kind.
JOB_KINDS: Mapping[str, str] = {
    "env.create": "env.create",
    "env.destroy": "env.destroy",
    "approve": "approve",
}
#: The verbs that change something (audited as ``chat.command``).
WRITES = frozenset({*JOB_KINDS, "env.extend"})


def usage(command: str = "/stackyard") -> str:
    """Every command, one per line."""
    lines = (
        "env list",
        "env create NAME --from PARENT [--ttl 4h] [--type TYPE] [--owner TEAM]",
        "env extend NAME --ttl 8h",
        "env destroy NAME",
        "status ENV",
        "approvals [ENV]",
        "approve DEPLOYMENT [REASON...]",
        "help",
    )
    return "\n".join(f"`{command} {line}`" for line in lines)


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed command line: the verb (``env.create``, ``status`` ...), its subject (an
    environment or a deployment), its options and, for ``approve``, the reason."""

    verb: str
    subject: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""

    def describe(self) -> str:
        """The command as typed (normalised), for messages and the audit log."""
        words = [*self.verb.split("."), *([self.subject] if self.subject else [])]
        words += [f"--{k} {v}" for k, v in sorted(self.options.items())]
        return " ".join([*words, *([self.reason] if self.reason else [])])


def parse_command(text: str) -> Command:
    """The command in a slash command's ``text`` (``InvalidInputError`` with the reason)."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise InvalidInputError(f"Cannot read the command: {exc}") from None
    if not words or words[0] in ("help", "-h", "--help"):
        return Command("help")
    head, rest = words[0], words[1:]
    if head == "env":
        if not rest:
            raise InvalidInputError(
                "Say what to do with environments: list, create, extend or destroy"
            )
        head, rest = f"env.{rest[0]}", rest[1:]
    if head == "env.list":
        _none(head, rest)
        return Command(head)
    if head in ("env.create", "env.extend", "env.destroy", "status"):
        subject, options = _split(head, rest)
        if head == "env.extend" and "ttl" not in options:
            raise InvalidInputError("env extend needs --ttl (the new time to live from now)")
        return Command(head, subject, options)
    if head == "approvals":
        if len(rest) > 1:
            raise InvalidInputError("approvals takes at most an environment")
        return Command(head, _arg(rest[0]) if rest else None)
    if head == "approve":
        if not rest:
            raise InvalidInputError("approve needs a deployment id")
        return Command(head, _arg(rest[0]), reason=" ".join(rest[1:])[:300])
    raise InvalidInputError(f"Unknown command '{head.replace('.', ' ')[:40]}'")


def _none(verb: str, rest: Sequence[str]) -> None:
    if rest:
        raise InvalidInputError(f"{verb.replace('.', ' ')} takes no arguments")


def _split(verb: str, words: Sequence[str]) -> tuple[str, dict[str, str]]:
    """The one positional argument of ``verb`` and its ``--name value`` options."""
    allowed = _OPTIONS.get(verb, frozenset())
    positional: list[str] = []
    options: dict[str, str] = {}
    it = iter(words)
    for word in it:
        if not word.startswith("--"):
            positional.append(word)
            continue
        name, eq, value = word[2:].partition("=")
        if name not in allowed:
            raise InvalidInputError(f"{verb.replace('.', ' ')} has no option --{name[:20]}")
        if not eq:
            value = next(it, "")
        if not value:
            raise InvalidInputError(f"--{name} needs a value")
        options[name] = value if name == "ttl" else _arg(value)
    if len(positional) != 1:
        raise InvalidInputError(f"{verb.replace('.', ' ')} takes one name")
    if "ttl" in options:
        from stackyard.model.platform import parse_duration

        try:
            parse_duration(options["ttl"])
        except ValueError as exc:
            raise InvalidInputError(f"Invalid --ttl: {exc}") from None
    return _arg(positional[0]), options


def _arg(word: str) -> str:
    if not _ARG.match(word):
        raise InvalidInputError(f"Invalid name '{word[:40]}'")
    return word


# -- running a command as the mapped user ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """Who asked, in Slack: the workspace, the user and the channel (audited)."""

    team_id: str
    user_id: str
    channel_id: str = ""

    def to_json(self) -> dict[str, str]:
        """The audit detail's ``slack`` part."""
        return {"team": self.team_id, "user": self.user_id, "channel": self.channel_id}


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A job the command submits: its kind, environment and arguments (admitted)."""

    kind: str
    env: str | None
    args: dict[str, Any]


def note(
    ws: Workspace,
    cmd: Command,
    origin: Origin,
    result: AuditResult,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Add the ``chat.command`` audit event of ``cmd`` (actor: the mapped stackyard user)."""
    target = f"env:{cmd.subject}" if cmd.subject and cmd.verb != "approve" else "org"
    if cmd.verb == "approve" and cmd.subject:
        target = f"deployment:{cmd.subject}"
    ws.access.audit(
        AUDIT_ACTION,
        target,
        result,
        {"via": "slack", "command": cmd.describe(), "slack": origin.to_json(), **(detail or {})},
    )


def _refused(ws: Workspace, cmd: Command, origin: Origin, exc: Exception) -> None:
    denied = isinstance(exc, PermissionDeniedError | PolicyDeniedError)
    message = getattr(exc, "message", type(exc).__name__)
    result = AuditResult.DENIED if denied else AuditResult.FAILED
    # the refusal itself is what the user is told: a store too broken to audit it must not
    # replace it with its own error (the service's own audit event was written, or failed)
    with contextlib.suppress(Exception):
        note(ws, cmd, origin, result, {"error": message})


def admit(ws: Workspace, cmd: Command, origin: Origin) -> JobRequest:
    """The job ``cmd`` submits, admitted as the API admits it (refusals are audited)."""
    from stackyard.jobs import admission

    kind = JOB_KINDS[cmd.verb]
    args: dict[str, Any]
    if kind == "env.create":
        args = {
            "name": cmd.subject,
            "type": cmd.options.get("type"),
            "parent": cmd.options.get("from"),
            "ttl": cmd.options.get("ttl"),
            "owner": cmd.options.get("owner"),
        }
    elif kind == "env.destroy":
        args = {"name": cmd.subject}
    else:
        args = {"deployment": cmd.subject, "reason": cmd.reason}
    try:
        env = admission.admit(ws, kind, args)
    except Exception as exc:
        _refused(ws, cmd, origin, exc)
        raise
    return JobRequest(kind, env, args)


def run(ws: Workspace, cmd: Command, origin: Origin) -> Reply:
    """Run a command that answers at once (list, status, approvals, extend) as ``ws``'s actor."""
    from stackyard.environments import approvals, inspect, lifecycle, views
    from stackyard.model.platform import parse_duration

    try:
        if cmd.verb == "env.list":
            listed = views.environments(ws)
            return environments_reply([e.to_json() for e in listed.environments], listed.now)
        assert cmd.subject is not None or cmd.verb == "approvals"
        if cmd.verb == "status":
            return status_reply(inspect.status(ws, str(cmd.subject)))
        if cmd.verb == "approvals":
            return approvals_reply(approvals.pending(ws, cmd.subject))
        if cmd.verb == "env.extend":
            seconds = parse_duration(cmd.options["ttl"])
            env = lifecycle.extend(ws, str(cmd.subject), ttl_s=seconds)
            note(ws, cmd, origin, AuditResult.OK, {"expires_at": env.expires_at})
            return Reply(
                f"✓ {cmd.subject} now expires {_expiry(env.expires_at, ws.store.now())}",
            )
    except Exception as exc:
        if cmd.verb in WRITES or isinstance(exc, PermissionDeniedError | PolicyDeniedError):
            _refused(ws, cmd, origin, exc)
        raise
    raise InvalidInputError(f"'{cmd.verb}' does not answer at once")


# -- answers -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer: its summary line and mrkdwn sections below it."""

    text: str
    sections: tuple[str, ...] = ()

    def message(self) -> dict[str, Any]:
        """The answer in Slack's message format (ephemeral: only the asker sees it)."""
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": _clip(part)}}
            for part in (_escape(self.text), *self.sections)[:_BLOCKS_MAX]
        ]
        return {
            "response_type": "ephemeral",
            "replace_original": False,
            "text": _clip(_escape(self.text)),
            "blocks": blocks,
        }


def _clip(text: str) -> str:
    return text if len(text) <= _SECTION_MAX else text[: _SECTION_MAX - 1] + "…"


def _escape(text: str) -> str:
    """``text`` safe in mrkdwn: Slack reads ``&``, ``<`` and ``>`` as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: object) -> str:
    return "`" + _escape(str(text)).replace("`", "'") + "`"


def _expiry(expires_at: float | None, now: float) -> str:
    from stackyard.model.platform import format_duration

    if expires_at is None:
        return "never"
    left = expires_at - now
    return f"in {format_duration(left)}" if left > 0 else "now (expired)"


def usage_reply(command: str, problem: str | None = None) -> Reply:
    """The usage message (after ``problem``, when the command was not understood)."""
    text = f"✗ {problem}" if problem else f"{command}: self-service environments from Slack"
    return Reply(text, (usage(command),))


def unmapped_reply(team_id: str, user_id: str) -> Reply:
    """The refusal of a Slack user no stackyard user is mapped to, saying how to get one."""
    return Reply(
        "✗ Your Slack user is not mapped to a stackyard user",
        (
            f"Ask a stackyard admin to add {_code(f'{team_id}:{user_id}=YOUR_STACKYARD_USER')} "
            f"to {_code(USERS_ENV)} (or to the file {_code(USERS_FILE_ENV)} names) on the "
            "server. Your commands then run with that user's roles.",
        ),
    )


def misconfigured_reply() -> Reply:
    """The answer while the server's user map is invalid (the reason is in its log)."""
    return Reply(
        "✗ The server's Slack user map is invalid",
        ("A stackyard admin finds why in the server's log; no command runs until it is fixed.",),
    )


def error_reply(cmd: Command, error: Mapping[str, Any]) -> Reply:
    """A refused or failed command: the problem's detail and hint (its ``title`` first)."""
    title = str(error.get("title") or "Failed")
    detail = str(error.get("detail") or "")
    sections = [f"{_escape(title)}: {_escape(detail)}"] if detail else []
    if error.get("hint"):
        sections.append("_" + _escape(str(error["hint"])) + "_")
    return Reply(f"✗ {cmd.describe()}", tuple(sections))


def environments_reply(envs: Sequence[Mapping[str, Any]], now: float) -> Reply:
    """``env list``: one line per environment."""
    if not envs:
        return Reply("No environments yet")
    lines = [
        f"• {_code(e['name'])} {_escape(str(e['type']))}, {_escape(str(e['status']))}"
        + (f", from {_code(e['parent'])}" if e.get("parent") else "")
        + (f", owner {_escape(str(e['owner']))}" if e.get("owner") else "")
        + f", expires {_expiry(e.get('expires_at'), now)}"
        for e in envs
    ]
    return Reply(f"{len(envs)} environment(s)", tuple(_chunks(lines)))


def status_reply(doc: Mapping[str, Any]) -> Reply:
    """``status ENV``: the environment, its resources' health and its workloads."""
    env = doc["environment"]
    lines = [f"*{_escape(str(env['name']))}* {_escape(str(env['type']))}, {env['status']}"]
    for r in doc.get("resources", []):
        lines.append(f"• {_code(r['address'])} {_escape(str(r.get('health', 'unknown')))}")
    for name, w in sorted(doc.get("workloads", {}).items()):
        state = w.get("state") or "unknown"
        lines.append(f"• workload {_code(name)} {_escape(str(state))}")
    deps = doc.get("deployments") or []
    if deps:
        last = deps[0]
        lines.append(f"last deployment {_code(last['id'])} {_escape(str(last['status']))}")
    return Reply(f"Status of {env['name']}", tuple(_chunks(lines)))


def approvals_reply(rows: Sequence[Mapping[str, Any]]) -> Reply:
    """``approvals``: the parked deployments and why they wait."""
    if not rows:
        return Reply("Nothing awaits approval")
    lines = []
    for r in rows:
        why = "; ".join(str(a.get("msg", "")) for a in r.get("approvals_needed", []))
        lines.append(
            f"• {_code(r['id'])} in {_code(r['env'])} by {_escape(str(r.get('actor', '')))}"
            + (f": {_escape(why)}" if why else "")
        )
    return Reply(f"{len(rows)} deployment(s) await approval", tuple(_chunks(lines)))


def job_reply(cmd: Command, job: Mapping[str, Any], command: str = "/stackyard") -> Reply:
    """The end of a command's job: what it did, or why it failed."""
    status = job.get("status")
    if status != JobStatus.SUCCEEDED:
        error = job.get("error") or {"title": str(status), "detail": f"The job ended {status}"}
        return error_reply(cmd, error)
    result: Mapping[str, Any] = job.get("result") or {}
    ref = f"(job {_code(job.get('id'))})"
    if cmd.verb == "env.create":
        env = result.get("environment") or {}
        verb = "Created" if result.get("created") else "Already there:"
        line = f"{verb} environment {_code(env.get('name'))} (type {_escape(str(env.get('type')))}"
        line += f", from {_code(env['parent'])})" if env.get("parent") else ")"
        return Reply(f"✓ {cmd.describe()}", (f"{line} {ref}",))
    if result.get("status") == DeploymentStatus.AWAITING_APPROVAL and result.get("deployment"):
        parked = str(result["deployment"])
        return Reply(
            f"⏸ {cmd.describe()} awaits approval",
            (
                f"Deployment {_code(parked)} waits for an approver; nothing was changed {ref}. "
                f"An approver runs {_code(f'{command} approve {parked}')}.",
            ),
        )
    if cmd.verb == "env.destroy" or "destroyed_resources" in result:
        return Reply(
            f"✓ {cmd.describe()}",
            (
                f"Destroyed {result.get('destroyed_resources', 0)} resource(s) of "
                f"{_code(result.get('env'))} {ref}",
            ),
        )
    dep = result.get("deployment") or {}
    return Reply(
        f"✓ {cmd.describe()}",
        (f"Deployment {_code(dep.get('id'))} {_escape(str(dep.get('status', 'done')))} {ref}",),
    )


def _chunks(lines: Sequence[str]) -> list[str]:
    """``lines`` joined into sections that each fit Slack's limit."""
    out: list[str] = []
    for line in lines:
        if out and len(out[-1]) + len(line) + 1 <= _SECTION_MAX:
            out[-1] += "\n" + line
        else:
            out.append(line)
    return out
