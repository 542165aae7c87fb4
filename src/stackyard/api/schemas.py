"""The API's request and response models (pydantic, at the edge).

A response is the CLI's ``--output json`` shape of the same call: these models name the fields
every client relies on and allow the rest (``extra="allow"``), so the OpenAPI schema is true
of every response without repeating each service's to_json here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_OPEN = ConfigDict(extra="allow")
_CLOSED = ConfigDict(extra="forbid")

# -- requests ----------------------------------------------------------------------------------

#: A Score file's name: a plain file name, no folder.
SCORE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class DeployRequest(BaseModel):
    """Score files (name -> YAML text) or a release; ``plan_only`` answers at once."""

    model_config = _CLOSED
    scores: dict[str, str] = Field(
        default_factory=dict, description="Score files: file name -> YAML text.", max_length=50
    )
    release: str | None = Field(default=None, description="A release id (or unique prefix).")
    plan_only: bool = Field(default=False, description="Plan; apply nothing (synchronous).")


class ScoresRequest(BaseModel):
    """Score files (name -> YAML text)."""

    model_config = _CLOSED
    scores: dict[str, str] = Field(
        description="Score files: file name -> YAML text.", max_length=50
    )


class ReleaseRequest(BaseModel):
    """Pin Score files, images and the component lock into a release."""

    model_config = _CLOSED
    scores: dict[str, str] = Field(
        description="Score files: file name -> YAML text.", max_length=50
    )
    images: dict[str, str] = Field(default_factory=dict, description="Workload name -> image.")
    env: str | None = Field(default=None, description="Resolve the lock in this environment.")


class EnvironmentCreate(BaseModel):
    """An environment to create (its type's core deployed by a job)."""

    model_config = _CLOSED
    name: str = Field(min_length=1, max_length=63)
    type: str | None = None
    parent: str | None = Field(default=None, description="Use this environment's core read-only.")
    ttl: str | None = Field(default=None, description="Time to live: 30m, 4h, 2d.")
    owner: str | None = Field(default=None, description="The owner team.")


class Extend(BaseModel):
    """A new time to live, from now."""

    model_config = _CLOSED
    ttl: str = Field(description="30m, 4h, 2d (capped by the type's maximum).")


class PromoteRequest(BaseModel):
    """A release to deploy to the next stage of its promotion path."""

    model_config = _CLOSED
    release: str
    to: str
    plan_only: bool = False


class Verdict(BaseModel):
    """Why an approver approves or rejects."""

    model_config = _CLOSED
    comment: str = Field(default="", max_length=2000)


class GrantRequest(BaseModel):
    """A role for a user or a team, at the organisation, a type or an environment."""

    model_config = _CLOSED
    role: str
    user: str | None = None
    team: str | None = None
    env: str | None = None
    type: str | None = None


class FilesRequest(BaseModel):
    """A folder's files: relative path -> text (platform documents, Rego policies)."""

    model_config = _CLOSED
    files: dict[str, str] = Field(max_length=500)
    dry_run: bool = Field(default=False, description="Show the changes; apply nothing.")


class TokenRequest(BaseModel):
    """A token to make for a user."""

    model_config = _CLOSED
    user: str = Field(min_length=1, max_length=200)
    ttl: str | None = Field(default=None, description="How long it lives: 30d, 12h (default 30d).")
    description: str = Field(default="", max_length=200)


class PolicyEval(BaseModel):
    """An input document to evaluate the applied policies of ``stage`` on."""

    model_config = _CLOSED
    stage: str
    input: dict[str, Any]
    env: str | None = None


# -- responses ---------------------------------------------------------------------------------


class Page(BaseModel):
    """One page of a list: ``next`` is the URL of the following page (null on the last)."""

    items: list[dict[str, Any]]
    next: str | None = None


class Identity(BaseModel):
    """Who the server takes the caller for."""

    user: str
    teams: list[str]
    via: str


class Environment(BaseModel):
    """An environment, as ``stackyard env show -o json`` prints it."""

    model_config = _OPEN
    name: str
    type: str
    status: str


class Deployment(BaseModel):
    """A deployment, as ``stackyard deployments ENV ID -o json`` prints it."""

    model_config = _OPEN
    id: str
    env: str
    kind: str
    status: str


class DeployOutcome(BaseModel):
    """A deploy's result, as ``stackyard deploy -o json`` prints it."""

    model_config = _OPEN
    deployment: dict[str, Any]
    plan: dict[str, Any] | None = None
    changed: bool


class Status(BaseModel):
    """``stackyard status ENV -o json``."""

    model_config = _OPEN
    environment: dict[str, Any]
    resources: list[dict[str, Any]]
    workloads: dict[str, Any]


class Logs(BaseModel):
    """A workload's captured log lines."""

    lines: list[str]


class Release(BaseModel):
    """A release, as ``stackyard release show -o json`` prints it."""

    model_config = _OPEN
    id: str


class Document(BaseModel):
    """An open JSON object: the CLI's JSON output of the call, as it is."""

    model_config = _OPEN


class Job(BaseModel):
    """A job: a long operation queued for a worker; ``result`` is the CLI's JSON of the call."""

    model_config = _OPEN
    id: str
    kind: str
    env: str | None = None
    actor: str
    status: str
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class Health(BaseModel):
    """Whether the process (``/healthz``), or the store and the queue (``/readyz``), answer."""

    status: str
    checks: dict[str, str] = Field(default_factory=dict)
