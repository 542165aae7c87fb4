"""Integrations: the Slack slash-command endpoint.

Slack cannot send a stackyard token, so the request's signature is its authentication: the
raw body is read (capped) and verified with the signing secret before the form is parsed.
Slack waits 3 s for an answer, so the route answers at once with an ephemeral
acknowledgement (or, for help, a usage mistake or an unmapped user, the whole answer), and a
background task runs the command as the mapped stackyard user, follows its job when it has
one, and posts the result to the request's ``response_url`` (docs/slack.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, BackgroundTasks, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from stackyard.api.problems import PROBLEM_JSON, problem, simple
from stackyard.api.routing import yard
from stackyard.errors import InvalidInputError, StackyardError
from stackyard.identity import Identity
from stackyard.integrations import slack
from stackyard.model.status import AuditResult

if TYPE_CHECKING:
    from stackyard.api.context import Yard

router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])
log = logging.getLogger("stackyard.api.slack")

#: How long a command's job is followed before the answer says it still runs (Slack keeps a
#: ``response_url`` for 30 minutes), how often it is looked at, and how many times a result
#: is posted before giving up.
FOLLOW_S = 25 * 60.0
FOLLOW_POLL_S = 0.5
POST_ATTEMPTS = 3
_COMMAND = re.compile(r"^/[a-z0-9_-]{1,32}$")
#: The fields of Slack's form (documented; the route reads the raw body itself).
_FIELDS = (
    "team_id",
    "team_domain",
    "enterprise_id",
    "channel_id",
    "user_id",
    "user_name",
    "command",
    "text",
    "response_url",
    "trigger_id",
    "api_app_id",
)
_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {name: {"type": "string"} for name in _FIELDS},
                    "required": ["team_id", "user_id", "command", "text", "response_url"],
                }
            }
        },
    }
}


class SlackMessage(BaseModel):
    """A message in Slack's format: ``ephemeral`` (only the asker sees it), its text and its
    blocks (mrkdwn sections)."""

    response_type: str = Field(description="Always `ephemeral`.")
    text: str = Field(description="The message (the fallback of the blocks).")
    replace_original: bool = False
    blocks: list[dict[str, Any]] = Field(default_factory=list)


@router.post(
    "/slack/commands",
    response_model=SlackMessage,
    summary="A Slack slash command (signed by Slack; no token)",
    openapi_extra=_FORM,
)
async def slack_command(
    request: Request,
    background: BackgroundTasks,
    x_slack_signature: Annotated[str | None, Header(max_length=200)] = None,
    x_slack_request_timestamp: Annotated[str | None, Header(max_length=20)] = None,
) -> JSONResponse:
    """Run ``/stackyard ...`` for the Slack user it comes from, as the stackyard user they
    are mapped to: an immediate acknowledgement here, the result at ``response_url``. 404
    while the server has no ``STACKYARD_SLACK_SIGNING_SECRET``; 401 when the signature or
    its timestamp does not verify."""
    config = slack.SlackConfig.from_env(os.environ)
    if config is None:
        raise HTTPException(
            404, f"The Slack integration is off: the server has no {slack.SIGNING_SECRET_ENV}"
        )
    raw = await _body(request)
    if raw is None:
        return JSONResponse(
            simple(413, "Request too large", f"A slash command is at most {slack.MAX_BODY} bytes"),
            status_code=413,
            media_type=PROBLEM_JSON,
        )
    try:
        slack.verify(
            config.signing_secret,
            timestamp=x_slack_request_timestamp,
            signature=x_slack_signature,
            body=raw,
            now=time.time(),
        )
    except StackyardError:
        if _ssl_check(raw):  # Slack checking the certificate: nothing runs, nothing is told
            return JSONResponse({"response_type": "ephemeral", "text": ""})
        log.info("slack: refused a request whose signature does not verify")
        raise
    form = _form(raw)
    command = form.get("command", "")
    command = command if _COMMAND.match(command) else "/stackyard"
    team, user = form.get("team_id", ""), form.get("user_id", "")
    if config.problem is not None:
        log.warning("slack: the user map is invalid: %s", config.problem)
        return _answer(slack.misconfigured_reply())
    username = config.user(team, user)
    if username is None:
        log.info("slack: refused Slack user %s of %s: not mapped", user[:40], team[:40])
        return _answer(slack.unmapped_reply(team[:40], user[:40]))
    try:
        cmd = slack.parse_command(form.get("text", ""))
    except InvalidInputError as exc:
        return _answer(slack.usage_reply(command, exc.message))
    if cmd.verb == "help":
        return _answer(slack.usage_reply(command))
    url = slack.check_response_url(
        form.get("response_url", ""), allow_loopback=config.allow_loopback
    )
    who = Identity(user=username, teams=(), via="slack")
    origin = slack.Origin(team[:40], user[:40], form.get("channel_id", "")[:40])
    log.info("slack: %s runs '%s'", username, cmd.describe())
    background.add_task(_carry_out, yard(request), who, cmd, origin, url, command)
    return _answer(slack.Reply(f"⏳ {command} {cmd.describe()}: on it. The result follows here."))


async def _body(request: Request) -> bytes | None:
    """The raw body, read up to ``slack.MAX_BODY`` bytes (None past it)."""
    announced = request.headers.get("content-length", "")
    if announced.isdigit() and (len(announced) > 9 or int(announced) > slack.MAX_BODY):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > slack.MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _form(raw: bytes) -> dict[str, str]:
    """The form's fields (the first value of each)."""
    try:
        text = raw.decode("utf-8")
        fields = parse_qs(text, keep_blank_values=True, strict_parsing=False, max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInputError(
            "The body is not a form", hint="Slack sends application/x-www-form-urlencoded."
        ) from None
    return {k: v[0] for k, v in fields.items() if v}


def _ssl_check(raw: bytes) -> bool:
    """Whether ``raw`` is Slack's certificate check (``ssl_check=1``, maybe a ``token``)."""
    try:
        fields = _form(raw)
    except InvalidInputError:
        return False
    return fields.get("ssl_check") == "1" and set(fields) <= {"ssl_check", "token"}


def _answer(reply: slack.Reply) -> JSONResponse:
    return JSONResponse(reply.message())


# -- after the acknowledgement -----------------------------------------------------------------


async def _carry_out(
    y: Yard,
    who: Identity,
    cmd: slack.Command,
    origin: slack.Origin,
    url: str,
    command: str,
) -> None:
    """Run ``cmd`` and post its result to ``url``; every failure becomes an answer."""
    try:
        reply = await _outcome(y, who, cmd, origin, command)
    except StackyardError as exc:
        _, body, _ = problem(exc)  # a 500's text is never shown
        reply = slack.error_reply(cmd, body)
    except HTTPException as exc:  # the request timeout of a service call
        reply = slack.error_reply(cmd, {"title": "Timed out", "detail": str(exc.detail)})
    except Exception as exc:
        log.error("slack: '%s' failed: %s", cmd.verb, type(exc).__name__)
        reply = slack.error_reply(cmd, {"title": "Internal error", "detail": "Internal error"})
    await _post(url, reply.message())


async def _outcome(
    y: Yard, who: Identity, cmd: slack.Command, origin: slack.Origin, command: str
) -> slack.Reply:
    """The answer to ``cmd``: a service call's, or its job's once it ended."""
    if cmd.verb not in slack.JOB_KINDS:
        return await y.call(who, lambda ws: slack.run(ws, cmd, origin))
    req = await y.call(who, lambda ws: slack.admit(ws, cmd, origin))
    job = await y.bounded(
        lambda: y.jobs.submit(
            req.kind, env=req.env, actor=who.user, teams=tuple(who.teams), args=req.args
        )
    )
    await y.call(who, lambda ws: slack.note(ws, cmd, origin, AuditResult.OK, {"job": job.id}))
    deadline = time.monotonic() + FOLLOW_S
    while True:
        current = await run_in_threadpool(y.jobs.get, job.id)
        if current is None or current.status.is_final:
            done = current.to_json() if current else {"id": job.id, "status": "gone"}
            return slack.job_reply(cmd, done, command)
        if time.monotonic() > deadline:
            return slack.Reply(
                f"⏳ {cmd.describe()} is still running",
                (f"Job `{job.id}`: GET /api/v1/jobs/{job.id} shows how it ends.",),
            )
        await asyncio.sleep(FOLLOW_POLL_S)


async def _post(url: str, message: dict[str, Any]) -> None:
    """POST ``message`` to the ``response_url`` (retried on a network error or a 5xx/429).
    Never logs the URL: it is a credential for the channel."""
    import httpx

    slack_host = urlsplit(url).hostname == slack.RESPONSE_HOST
    # a proxy of the environment applies to Slack, never to a loopback test receiver
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False, trust_env=slack_host) as c:
        for attempt in range(POST_ATTEMPTS):
            try:
                response = await c.post(url, json=message)
            except httpx.HTTPError as exc:
                log.warning("slack: posting a result failed (%s)", type(exc).__name__)
            else:
                if response.status_code < 500 and response.status_code != 429:
                    if response.status_code >= 400:
                        log.warning(
                            "slack: the response_url refused a result (HTTP %d)",
                            response.status_code,
                        )
                    return
                log.warning("slack: the response_url answered HTTP %d", response.status_code)
            if attempt + 1 < POST_ATTEMPTS:
                await asyncio.sleep(2.0**attempt)
