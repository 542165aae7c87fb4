"""The ``stackyard server`` command: the REST API on uvicorn, with an in-process worker on a
SQLite home (one command gives a working service)."""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from pathlib import Path
from typing import Annotated

import typer

from stackyard.errors import InvalidInputError


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def check_binding(
    host: str, *, tls_cert: Path | None, tls_key: Path | None, insecure_http: bool
) -> None:
    """Refuse a non-loopback address without TLS (tokens would cross the network in clear),
    unless ``insecure_http`` says a proxy in front terminates TLS; and half a TLS pair."""
    if (tls_cert is None) != (tls_key is None):
        raise InvalidInputError(
            "Give --tls-cert and --tls-key together", hint="Both files, in PEM format."
        )
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            raise InvalidInputError(f"No such file: {path}", hint="Give a PEM file.")
    if tls_cert is None and not is_loopback(host) and not insecure_http:
        raise InvalidInputError(
            f"Refusing to serve plain HTTP on {host}: bearer tokens would cross the network "
            "in clear",
            hint="Give --tls-cert and --tls-key, bind 127.0.0.1, or pass --insecure-http when "
            "a proxy in front of the server terminates TLS.",
        )


def server(
    host: Annotated[str, typer.Option("--host", help="The address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="The port to listen on.")] = 8080,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="TLS certificate (PEM).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="TLS private key (PEM).")
    ] = None,
    insecure_http: Annotated[
        bool,
        typer.Option(
            "--insecure-http",
            help="Serve plain HTTP on a non-loopback address (TLS ends at a proxy in front).",
        ),
    ] = False,
    workers_in_process: Annotated[
        int | None,
        typer.Option(
            "--workers-in-process",
            min=0,
            help="Jobs the in-process worker runs at once (0: none; default 2 on a SQLite "
            "home, 0 on PostgreSQL, where 'stackyard worker' processes run them).",
        ),
    ] = None,
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            min=1,
            help="Server processes sharing the port (a PostgreSQL store only; default 1).",
        ),
    ] = 1,
    body_limit: Annotated[
        int, typer.Option("--body-limit", min=1024, help="Largest request body, in bytes.")
    ] = 1024 * 1024,
    request_timeout: Annotated[
        float,
        typer.Option("--request-timeout", min=1.0, help="Seconds a synchronous request may take."),
    ] = 30.0,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            help="An origin whose browser pages may call the API (repeatable; default none).",
        ),
    ] = None,
    read_cache: Annotated[
        bool,
        typer.Option(
            "--read-cache/--no-read-cache",
            help="Answer the hot reads (environments, an environment, its status) from memory "
            "until the store changes (docs/api.md).",
        ),
    ] = True,
    status_max_age: Annotated[
        float,
        typer.Option(
            "--status-max-age",
            min=0.0,
            max=60.0,
            help="Seconds a cached status (observed health and readiness) may be served "
            "(0: observe on every request).",
        ),
    ] = 1.0,
) -> None:
    """Serve the REST API (and run jobs in process on a SQLite home)."""
    try:
        import uvicorn

        from stackyard.api.app import CONFIG_ENV, LOG_FORMAT, config_json, latency_first
        from stackyard.api.context import ApiConfig
        from stackyard.api.edge import guard_logs
        from stackyard.portal import site
    except ImportError:
        raise InvalidInputError(
            "The server's dependencies are not installed",
            hint="pip install 'stackyard[server]'",
        ) from None
    from stackyard.settings import Settings

    check_binding(host, tls_cert=tls_cert, tls_key=tls_key, insecure_http=insecure_http)
    settings = Settings.load()
    postgres = settings.database_url.startswith("postgresql")
    concurrency = workers_in_process if workers_in_process is not None else (0 if postgres else 2)
    if processes > 1 and not postgres:
        raise InvalidInputError(
            "--processes needs a PostgreSQL store",
            hint="Set STACKYARD_DATABASE_URL=postgresql://… (a SQLite home is served by one "
            "process), or leave --processes out.",
        )
    config = ApiConfig(
        body_limit=body_limit,
        timeout_s=request_timeout,
        cors_origins=tuple(cors_origin or ()),
        read_cache=read_cache,
        status_max_age_s=status_max_age,
    )
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    latency_first()
    # one process: the app here; several: uvicorn's processes each build theirs
    app = site(settings, config) if processes == 1 else None
    guard_logs()
    stop = threading.Event()
    thread = None
    if concurrency:
        from stackyard.jobs import Worker

        worker = Worker(settings, concurrency=concurrency, name=f"server-{port}")
        thread = threading.Thread(target=worker.run, args=(stop,), name="worker", daemon=True)
        thread.start()
    if app is None:
        os.environ[CONFIG_ENV] = config_json(config)
    try:
        uvicorn.run(
            app if app is not None else "stackyard.portal:site_from_env",
            factory=app is None,
            workers=processes if app is None else None,
            host=host,
            port=port,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            proxy_headers=False,
            server_header=False,
            log_config=None,
        )
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=30)
