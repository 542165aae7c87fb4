"""The HTTP client of remote mode: calls to the server's API, problem details turned back
into the errors the CLI reports, pagination, and following a job's server-sent events.

httpx is imported here only, so a command pays for it only when it goes to a server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from stackyard.cli.remote import LOGIN_HINT, Target
from stackyard.errors import (
    ApplyFailedError,
    CancelledError,
    InvalidInputError,
    LockHeldError,
    PermissionDeniedError,
    PolicyDeniedError,
    StackyardError,
    StalePlanError,
    StoreUnavailableError,
    VerificationFailedError,
)

#: exit code -> the class whose rendering and exit code a remote error takes.
_BY_EXIT: dict[int, type[StackyardError]] = {
    2: InvalidInputError,
    3: StalePlanError,
    4: LockHeldError,
    5: PolicyDeniedError,
    6: PermissionDeniedError,
    7: ApplyFailedError,
    8: VerificationFailedError,
    10: CancelledError,
}
FINAL = frozenset({"succeeded", "failed", "cancelled"})
#: How long one synchronous call may take (jobs are followed on their own stream).
TIMEOUT = httpx.Timeout(120.0, connect=10.0)


def remote_error(doc: dict[str, Any]) -> StackyardError:
    """The error a problem document (or a job's error document) stands for, rendered by the
    CLI's error boundary as the local error is: same message, hint, diagnostics, exit code."""
    from stackyard.diagnostics import Diagnostic, Severity

    code = doc.get("exit_code")
    code = code if isinstance(code, int) else 1
    base = _BY_EXIT.get(code, StackyardError)
    # The local exception's class name when the document names it (a job's error does), so
    # ``--output json`` errors read the same; else the class of the exit code.
    name = str(doc.get("type") or "")
    name = name if name.isidentifier() else base.__name__
    cls: type[StackyardError] = type(name, (base,), {"exit_code": code})
    message = str(doc.get("detail") or doc.get("title") or "The server refused the request")
    hint = doc.get("hint") if isinstance(doc.get("hint"), str) else None
    exc = StackyardError.__new__(cls)
    StackyardError.__init__(exc, message, hint=hint)
    diags = [
        Diagnostic(
            Severity(d.get("severity", "error")),
            str(d.get("summary", "")),
            str(d.get("detail", "")),
            file=str(d.get("file") or ""),
            path=str(d.get("path") or ""),
            subject=str(d.get("subject") or ""),
        )
        for d in doc.get("diagnostics") or []
        if isinstance(d, dict)
    ]
    exc.diagnostics = diags  # type: ignore[attr-defined]
    if issubclass(cls, PolicyDeniedError):
        exc.decision_id = str(doc.get("decision") or "")  # type: ignore[attr-defined]
    if issubclass(cls, LockHeldError):
        exc.holder = None  # type: ignore[attr-defined]
    if issubclass(cls, ApplyFailedError):
        exc.failed = []  # type: ignore[attr-defined]
    return exc


class Client:
    """Calls to one server as one token's user."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._http = httpx.Client(
            base_url=target.url,
            headers={
                "Authorization": f"Bearer {target.require_token()}",
                "Accept": "application/json",
            },
            timeout=TIMEOUT,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- plain calls ---------------------------------------------------------------------------

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; a problem answer raised as its error."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StoreUnavailableError(
                f"Cannot reach the server {self.target.url}: {type(exc).__name__}",
                hint="Check STACKYARD_URL (or 'stackyard login'), and that the server runs.",
            ) from None
        if response.status_code >= 400:
            raise self._problem(response)
        return response

    def _problem(self, response: httpx.Response) -> StackyardError:
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or "exit_code" not in doc:
            code = 6 if response.status_code in (401, 403) else 7
            doc = {
                "detail": f"The server answered {response.status_code} to "
                f"{response.request.method} {response.request.url.path}",
                "exit_code": code,
            }
        if response.status_code == 401:
            doc = {**doc, "hint": doc.get("hint") or LOGIN_HINT}
        return remote_error(doc)

    def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` with the ``params`` that are not None: the JSON answer."""
        query = {k: v for k, v in params.items() if v is not None}
        return self.call("GET", path, params=query).json()

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        """POST a JSON body: the JSON answer."""
        query = {k: v for k, v in params.items() if v is not None}
        return self.call("POST", path, json=body, params=query).json()

    def delete(self, path: str) -> Any:
        """DELETE ``path``: the JSON answer."""
        return self.call("DELETE", path).json()

    def items(self, path: str, **params: Any) -> list[Any]:
        """Every item of a paginated list (following ``next`` until it is null)."""
        page = self.get(path, limit=500, **params)
        out = list(page["items"])
        while page.get("next"):
            page = self.call("GET", page["next"]).json()
            out.extend(page["items"])
        return out

    # -- jobs ------------------------------------------------------------------------------------

    def job(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        progress: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Submit a long operation and follow it to its end: its result (what the local
        command's ``--output json`` prints), or its error raised."""
        response = self.call(method, path, json=body)
        doc = response.json()
        if response.status_code != 202:  # answered at once (a plan)
            return dict(doc)
        from stackyard.jobs.model import JobStatus

        job = self.follow(str(doc["id"]), progress=progress)
        if job.get("status") == JobStatus.SUCCEEDED:
            return dict(job.get("result") or {})
        if job.get("status") == JobStatus.CANCELLED:
            raise CancelledError(f"Job {job['id']} was cancelled: nothing more was done")
        raise remote_error(job.get("error") or {"detail": f"Job {job['id']} failed"})

    def follow(self, job_id: str, *, progress: Callable[[str], None] | None) -> dict[str, Any]:
        """The job once it ended, saying each of its events through ``progress``; a lost
        stream is resumed after the last event seen."""
        last = 0
        for _attempt in range(20):
            try:
                for event, data, seq in self._events(job_id, last):
                    if seq:
                        last = seq
                    if event == "progress" and progress is not None:
                        progress(str(data.get("message", "")))
                    elif event == "end":
                        return dict(data)
            except httpx.TransportError:
                pass  # resumed below from ``last``
            job = self.get(f"/api/v1/jobs/{job_id}")
            if job.get("status") in FINAL:
                return dict(job)
            time.sleep(min(0.2 * (_attempt + 1), 2.0))  # the stream dropped mid-job: resume
        return dict(self.get(f"/api/v1/jobs/{job_id}"))

    def _events(self, job_id: str, after: int) -> Iterator[tuple[str, dict[str, Any], int]]:
        """``(event, data, seq)`` of the job's SSE stream from ``after``."""
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(after)}
        timeout = httpx.Timeout(None, connect=10.0)
        with self._http.stream(
            "GET", f"/api/v1/jobs/{job_id}/events", headers=headers, timeout=timeout
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise self._problem(response)
            event, data, seq = "message", list[str](), 0
            for line in response.iter_lines():
                if not line:
                    if data:
                        yield event, _data(data), seq
                    event, data, seq = "message", [], 0
                elif line.startswith(":"):
                    continue
                else:
                    field, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if field == "event":
                        event = value
                    elif field == "data":
                        data.append(value)
                    elif field == "id" and value.isdigit():
                        seq = int(value)


def _data(lines: list[str]) -> dict[str, Any]:
    try:
        found = json.loads("\n".join(lines))
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
