"""The command tree: the root Typer app, its global options, and commands imported on first use.

The root knows every command's name, module and one-line help from the table ``COMMANDS``,
so ``stackyard --help`` lists them all without importing one, and ``stackyard env ...``
imports ``stackyard.cli.envs`` alone: each command group's module pulls in what its commands
need (pydantic models, the state store, providers), and a command pays only for its own.
``tests/unit/test_cli_tree.py`` checks the table against the commands it names, and
``tests/unit/test_import_guard.py`` what ``--version``, ``--help`` and ``workload validate``
import.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any

import typer
import typer.main
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from stackyard import __version__
from stackyard.cli.output import OutputFormat, print_json, stderr, stdout

# Click's classes are vendored privately by recent Typer releases (``typer._click``) and are
# ``click`` itself in older ones, so its ``Context`` and ``Command`` are typed ``Any`` here.
Command = Any
Context = Any


@dataclass(frozen=True, slots=True)
class Entry:
    """One command of the root: where it is defined, and the help line the root lists."""

    name: str
    module: str  # under ``stackyard.cli``
    attr: str  # a ``typer.Typer`` (a command group) or a function (a command)
    help: str  # the first paragraph of its help, exactly as ``stackyard --help`` shows it


#: Every command of the root, in the order of ``stackyard --help``: the delivery flow first.
COMMANDS: tuple[Entry, ...] = (
    Entry(
        "quickstart",
        "release",
        "quickstart",
        "From nothing to a running app: home, platform, dev, an ephemeral env and the hello app.",
    ),
    Entry(
        "deploy",
        "deploy",
        "deploy",
        "Resolve, plan, confirm, apply and run workloads in an environment.",
    ),
    Entry(
        "explain",
        "deploy",
        "explain",
        "Show every candidate binding for each resource request, why it matched or not, "
        "and the winner.",
    ),
    Entry(
        "status",
        "deploy",
        "status",
        "Resources with observed health, workloads with readiness and endpoints, last deployments.",
    ),
    Entry(
        "outputs", "deploy", "outputs", "Show resource outputs; secrets are masked unless --reveal."
    ),
    Entry("logs", "deploy", "logs", "Print a workload's captured logs."),
    Entry(
        "deployments",
        "deploy",
        "deployments",
        "List an environment's deployments, or show one with its events.",
    ),
    Entry(
        "remove",
        "deploy",
        "remove",
        "Take a workload out of an environment (stop it, destroy what only it used), "
        "or destroy\nan unused resource.",
    ),
    Entry(
        "promote",
        "release",
        "promote",
        "Deploy a release's pinned builds to the next stage (after it succeeded in the "
        "previous one).",
    ),
    Entry(
        "upgrade",
        "upgrade",
        "upgrade",
        "Move every instance of a component to the newest build in a range, in promotion order.",
    ),
    Entry(
        "approve",
        "governance",
        "approve",
        "Approve a parked deployment: it is re-planned, re-evaluated and applied.",
    ),
    Entry("reject", "governance", "reject", "Reject a parked deployment: nothing is applied."),
    Entry(
        "approvals",
        "governance",
        "approvals",
        "List deployments awaiting approval, with the policies that asked for it.",
    ),
    Entry(
        "decisions",
        "governance",
        "decisions",
        "Read the decision log: every policy evaluation with its results and policy revision.",
    ),
    Entry(
        "cost",
        "governance",
        "cost",
        "Monthly cost from each component's declared cost (decimal, to the cent).",
    ),
    Entry(
        "metrics",
        "metrics",
        "metrics",
        "DORA per team and workload, environments, approvals, drift, adoption, cost and jobs.",
    ),
    Entry(
        "init",
        "tree",
        "init",
        "Create the home (state, local registry, signing key) and publish the built-in library.",
    ),
    Entry(
        "platform",
        "platform",
        "app",
        "Platform configuration as code: environment types, environments, teams, paths.",
    ),
    Entry("env", "envs", "app", "Create, inspect, extend and destroy environments."),
    Entry("release", "release", "app", "Immutable, content-addressed releases."),
    Entry(
        "audit", "governance", "audit_app", "The audit log: every mutating action, hash-chained."
    ),
    Entry("access", "governance", "access_app", "Role grants: who may do what, where."),
    Entry("token", "tokens", "app", "API tokens for the server: create, list and revoke them."),
    Entry("policy", "governance", "policy_app", "Rego policies: test and evaluate them."),
    Entry("component", "component", "app", "Build, check and publish infrastructure components."),
    Entry(
        "catalog",
        "catalog",
        "app",
        "Who runs which component versions (adoption), and the Backstage export.",
    ),
    Entry(
        "workload", "workload", "app", "Score workloads: validate the files software teams write."
    ),
    Entry("providers", "providers", "app", "List the installed providers and their kinds."),
    Entry(
        "doctor",
        "doctor",
        "doctor",
        "Say which runtimes this machine can use (local, containers) and why not.",
    ),
    Entry("state", "state", "app", "Inspect and repair environment state."),
    Entry(
        "webhooks",
        "webhooks",
        "app",
        "Webhooks: the applied Webhook documents, their deliveries, and redelivery.",
    ),
    Entry(
        "drift",
        "drift",
        "drift",
        "Observe every recorded resource and report what drifted, grouped by root cause.",
    ),
    Entry(
        "adopt",
        "drift",
        "adopt",
        "Record an object whose record was lost: only at its deterministic name, with our label.",
    ),
    Entry(
        "forget",
        "drift",
        "forget",
        "Drop records without touching the objects (admin only, audited).",
    ),
    Entry(
        "slo",
        "slo",
        "app",
        "Service level objectives: measured availability and the error budget left.",
    ),
    Entry("keys", "keys", "app", "Show, generate, import, remove and export signing keys."),
    Entry(
        "daemon", "daemon", "app", "The command server that keeps commands fast: show or stop it."
    ),
    Entry(
        "server",
        "server",
        "server",
        "Serve the REST API (and run jobs in process on a SQLite home).",
    ),
    Entry(
        "worker",
        "worker",
        "worker",
        "Run queued jobs (deploys, environment changes, promotions) until stopped.",
    ),
    Entry(
        "login",
        "remote",
        "login",
        "Log in to a stackyard server: every command then runs there.",
    ),
    Entry(
        "logout",
        "remote",
        "logout",
        "Forget the stored server and token: commands work on the local home again.",
    ),
)


def build(entry: Entry) -> Command:
    """Import ``entry``'s module and make its click command, as ``add_typer``/``command`` would.

    A throw-away Typer with the root's defaults does the conversion, so a lazily built command
    is the one the eager tree had: same parameters, help, markup mode and exception settings.
    """
    target = getattr(importlib.import_module(f"stackyard.cli.{entry.module}"), entry.attr)
    holder = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=entry.name)
        group = typer.main.get_command(holder)
        assert isinstance(group, TyperGroup)
        return group.commands[entry.name]
    holder.command(entry.name)(target)
    return typer.main.get_command(holder)


def first_paragraph(help_text: str) -> str:
    """The part of a command's help that a group's command list shows."""
    return inspect.cleandoc(help_text).split("\n\n")[0].strip()


class LazyCommands(MutableMapping[str, Command]):
    """Name → click command; a command's module is imported on its first lookup."""

    def __init__(self, entries: tuple[Entry, ...]) -> None:
        self._entries = {e.name: e for e in entries}
        self._built: dict[str, Command] = {}

    def __getitem__(self, name: str) -> Command:
        if name not in self._built:
            entry = self._entries[name]  # the only KeyError that means "no such command"
            try:
                self._built[name] = build(entry)
            except KeyError as exc:  # a bug importing the command: never "No such command"
                raise RuntimeError(f"cannot load the command '{name}': {exc!r}") from exc
        return self._built[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        if self._entries.pop(name, None) is None and name not in self._built:
            raise KeyError(name)
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._entries
        yield from (name for name in self._built if name not in self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._built

    def __len__(self) -> int:
        return len(self._entries.keys() | self._built.keys())

    def stub(self, name: str) -> Command | None:
        """The command as a list of commands shows it (name and help), built or not."""
        if name in self._built or name not in self._entries:
            return self._built.get(name)
        return TyperCommand(name=name, help=self._entries[name].help)


class LazyGroup(TyperGroup):
    """The root group: commands come from ``COMMANDS``, imported when one is resolved.

    Its own help lists each command from the table (``stub``); every other lookup (running a
    command, its ``--help``, suggestions for a typo) goes through ``LazyCommands``.
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.lazy = LazyCommands(COMMANDS)
        self.commands = self.lazy
        self._listing = False

    def list_commands(self, ctx: Context) -> list[str]:
        """Every command's name, in the table's order (Typer's own reads each command)."""
        return list(self.lazy)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        """The command called ``cmd_name``: a help-line stub while the root's help is shown."""
        if self._listing:
            return self.lazy.stub(cmd_name)
        return self.lazy.get(cmd_name)

    def format_help(self, ctx: Context, formatter: Any) -> None:
        """The root's help, listing every command without importing it."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="stackyard",
    cls=LazyGroup,
    help="Self-service infrastructure: components, environments and Score workloads.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stackyard {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for internal errors."),
) -> None:
    """Self-service infrastructure: components, environments and Score workloads."""
    # --debug is read from the arguments by the boundary (``invoke``), which runs after the
    # callback has returned: nothing to keep here.


def init(
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="Output format.", case_sensitive=False)
    ] = OutputFormat.TEXT,
) -> None:
    """Create the home (state, local registry, signing key) and publish the built-in library."""
    from stackyard.service import init_home
    from stackyard.settings import Settings

    con = stderr()
    result = init_home(Settings.load(), progress=lambda msg: con.print(f"[dim]{escape(msg)}[/]"))
    if output is OutputFormat.JSON:
        print_json(result.to_json())
        return
    out = stdout()
    out.print(f"[green]✓[/] home {escape(result.home)}")
    out.print(f"  state     {escape(result.database)}")
    out.print(f"  registry  {escape(result.registry)}")
    out.print(f"  key       {escape(result.key_id)}")
    out.print(f"  library   {len(result.published)} published, {len(result.already)} already there")
    for skipped in result.not_published:
        out.print(
            f"  [yellow]not published[/] {escape(skipped['component'])}: "
            f"{escape(skipped['reason'])}"
        )
    if result.not_published:
        out.print("  [dim]Install what they need, then run 'stackyard init' again.[/]")
