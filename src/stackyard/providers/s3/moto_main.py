"""The local S3 server's process: moto's S3 and IAM, with IAM authentication always on.

Run as ``python -m stackyard.providers.s3.moto_main --port N --admin FILE``. Before serving,
it creates the admin IAM user (``stackyard-admin``, allowed everything) whose access key is
read from ``FILE`` (JSON, 0600; never argv, which other users can read in /proc), so the
admin key is the same after every restart. A rewritten ``FILE`` (a new admin secret) is
picked up by the next request. Every request is then checked as AWS would: the
SigV4 signature against the key's secret and the action against the caller's IAM policies,
so a bucket user's key reaches its bucket only. moto's unauthenticated control API
(``/moto-api/``, which can reset the server or switch authentication off) is refused.

Everything lives in memory: a restarted server is empty but for its admin (see
docs/adr/0005-s3-server.md).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ADMIN_USER = "stackyard-admin"
ADMIN_POLICY = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
HOST = "127.0.0.1"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Admin:
    """The admin user's access key, kept in line with the admin file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._key: Any = None
        self._backend: Any = None

    def bootstrap(self) -> None:
        """The admin user, its policy and its access key, made before any request."""
        from moto import settings
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.iam.models import iam_backends

        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # authentication from the first request on
        backend = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
        backend.create_user("us-east-1", ADMIN_USER, tags=[])
        backend.put_user_policy(ADMIN_USER, "stackyard-admin", ADMIN_POLICY)
        self._backend = backend
        self._key = backend.create_access_key(ADMIN_USER)
        self.refresh()

    def refresh(self) -> None:
        """Give the admin key the id and secret the file holds, when the file changed."""
        st = self._path.stat()
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            admin = json.loads(self._path.read_text())
            key = self._key
            self._backend.access_keys.pop(key.physical_resource_id, None)
            key.access_key_id = str(admin["access_key_id"])
            key.secret_access_key = str(admin["secret_key"])
            self._backend.access_keys[key.physical_resource_id] = key
            self._stamp = stamp


_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Requests to this server must be signed</Message></Error>"
)


def guard(app: WsgiApp, admin: Admin) -> WsgiApp:
    """``app`` behind two checks: no control API, no unsigned request."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if str(environ.get("PATH_INFO", "")).startswith("/moto-api"):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"the control API is disabled on this server\n"]
        signed = "HTTP_AUTHORIZATION" in environ or "X-Amz-Credential" in str(
            environ.get("QUERY_STRING", "")
        )
        if not signed:  # moto would fail on them with a 500
            start_response("403 Forbidden", [("Content-Type", "application/xml")])
            return [_DENIED]
        admin.refresh()
        return app(environ, start_response)

    return guarded


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, bootstrap the admin and serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="stackyard-s3-server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin", type=Path, required=True, help="JSON file with the admin key")
    args = parser.parse_args(argv)

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    admin = Admin(args.admin)
    admin.bootstrap()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = guard(DomainDispatcherApplication(create_backend_app), admin)
    run_simple(HOST, args.port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
