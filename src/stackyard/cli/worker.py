"""The `stackyard worker` command: run queued jobs in the foreground until stopped."""

from __future__ import annotations

import typer

from stackyard.errors import InvalidInputError


def worker(
    concurrency: int = typer.Option(2, "--concurrency", "-c", min=1, help="Jobs run at once."),
    name: str | None = typer.Option(
        None, "--name", help="How jobs and events name this worker (default: worker)."
    ),
    heartbeat: str = typer.Option(
        "5s",
        "--heartbeat",
        help="How often the worker tells the queue it is alive.",
        metavar="<duration>",
    ),
    stalled_after: str = typer.Option(
        "30s",
        "--stalled-after",
        help="After how long without a heartbeat a worker is dead and its jobs run again.",
        metavar="<duration>",
    ),
) -> None:
    """Run queued jobs (deploys, environment changes, promotions) until stopped.

    On a PostgreSQL store (STACKYARD_DATABASE_URL) any number of workers share the queue;
    jobs of one environment never run at once. On a SQLite home the embedded server's own
    worker is enough. SIGINT or SIGTERM stop it after the running jobs finish.
    """
    import signal
    import threading

    from stackyard.cli.output import stderr
    from stackyard.jobs import Worker
    from stackyard.jobs.queue import is_postgres
    from stackyard.settings import Settings, parse_duration

    beat, stalled = (
        parse_duration(heartbeat, "--heartbeat"),
        parse_duration(stalled_after, "--stalled-after"),
    )
    if beat <= 0 or stalled <= beat:
        raise InvalidInputError(
            "--stalled-after must be longer than --heartbeat, and both above 0",
            hint="Use, say, --heartbeat 5s --stalled-after 30s.",
        )
    settings = Settings.load()
    if not is_postgres(settings) and not (settings.home / "state.db").exists():
        raise InvalidInputError(
            f"No stackyard home at {settings.home}",
            hint="Run 'stackyard init' first, or set STACKYARD_DATABASE_URL to a PostgreSQL store.",
        )
    run = Worker(
        settings,
        concurrency=concurrency,
        name=name,
        heartbeat_s=beat,
        stalled_after_s=stalled,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    queue = "PostgreSQL (procrastinate)" if is_postgres(settings) else "the embedded queue"
    stderr().print(f"worker {run.identity} running jobs from {queue}; Ctrl-C stops it")
    run.run(stop)
