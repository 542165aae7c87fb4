"""The ``stackyard component`` commands: work on component packages (``component.yaml``).

Each command is a thin renderer over the model: it calls one function, renders the
result as text or JSON and picks the exit code (0 ok, 2 invalid input).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from stackyard.cli.output import OutputFormat, print_json, stderr, stdout, validation_report
from stackyard.diagnostics import error, has_errors
from stackyard.errors import InvalidInputError
from stackyard.model.component import validate_component

app = typer.Typer(help="Build, check and publish infrastructure components.", no_args_is_help=True)

ComponentDir = Annotated[
    Path,
    typer.Argument(
        help="A component directory (holding component.yaml), or the component.yaml itself.",
        show_default=False,
    ),
]
Output = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="Output format.", case_sensitive=False),
]


@app.command("validate")
def validate(path: ComponentDir, output: Output = OutputFormat.TEXT) -> None:
    """Check a component: manifest structure, template lint and the type contract.

    Exits 0 when the component is valid (warnings allowed) and 2 when it is not.
    """
    manifest, diags = validate_component(path)
    valid = manifest is not None and not has_errors(diags)
    ok_text = f"{manifest.ref} is valid" if manifest is not None else "valid"
    validation_report(diags, output, valid=valid, ok_text=ok_text)
    if not valid:
        raise typer.Exit(2)


@app.command("build")
def build_cmd(
    path: ComponentDir,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the archive here (default: <name>-<version>.tar.gz)."),
    ] = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Build the component's reproducible archive; prints its digest."""
    from stackyard.cli.remote import refuse

    refuse("component build", "a builder's machine builds and signs; publish from there")
    from stackyard.components.package import build as build_archive
    from stackyard.components.package import write

    built = build_archive(path)
    target = out or Path(f"{built.manifest.name}-{built.manifest.version}.tar.gz")
    write(built, target)
    if output is OutputFormat.JSON:
        print_json(
            {"name": built.manifest.name, "version": built.manifest.version, "digest": built.digest}
        )
        return
    con = stdout()
    con.print(f"[green]✓[/] built {escape(built.manifest.ref)} → {escape(str(target))}")
    con.print(f"  digest {built.digest}, {len(built.files)} file(s)")
    for skipped in built.ignored:
        con.print(f"  [dim]left out: {escape(skipped)}[/]")


RegistryRef = Annotated[
    str | None,
    typer.Option(
        "--registry",
        help="[http://]HOST[:PORT]/NAMESPACE of a remote OCI registry (default: "
        "$STACKYARD_REGISTRY, else the local layout in the home).",
    ),
]
PlainHttp = Annotated[
    bool,
    typer.Option(
        "--plain-http",
        help="Talk to the registry without TLS (default: $STACKYARD_REGISTRY_PLAIN_HTTP).",
    ),
]
NameVersion = Annotated[str, typer.Argument(help="NAME@VERSION", show_default=False)]


def _registry(ref: str | None, plain_http: bool) -> Any:
    from stackyard.cli.common import _command_path
    from stackyard.cli.remote import refuse
    from stackyard.components.registry import open_registry
    from stackyard.settings import Settings

    if ref is None:  # the home's registry: not this machine's in remote mode
        refuse(_command_path(), "it works on this machine's registry (or give --registry)")
    settings = Settings.load(registry=ref)
    return open_registry(
        settings.registry,
        home=settings.home,
        plain_http=plain_http or settings.registry_plain_http,
    )


def _warn(message: str) -> None:
    """A tag the read side skipped (not a stackyard component, or a tag that lies)."""
    stderr().print(f"[yellow]warning:[/] {escape(message)}")


def _split(ref: str) -> tuple[str, str]:
    name, sep, version = ref.partition("@")
    if not sep or not name or not version:
        raise InvalidInputError(
            f"'{ref}' is not NAME@VERSION",
            [
                error(
                    "Invalid component reference",
                    f"Write the component as NAME@VERSION, e.g. postgres-database@1.0.0; got '{ref}'.",
                )
            ],
        )
    return name, version


@app.command("publish")
def publish_cmd(
    path: ComponentDir,
    registry: RegistryRef = None,
    plain_http: PlainHttp = False,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Validate, check versions, run publish checks and component tests, push, and attest.

    Stops at the first failing stage and prints all of its diagnostics (exit 2).
    """
    from stackyard.environments import publication
    from stackyard.settings import Settings

    settings = Settings.load(registry=registry)
    con = stderr()
    ring, made = publication.signing_keyring(settings.home)
    if made:
        con.print(f"[dim]generated signing key {escape(made)}[/]")
    reg = _registry(registry, plain_http)
    try:
        result = publication.publish(
            settings,
            path,
            registry=reg,
            keyring=ring,
            progress=lambda stage, msg: con.print(f"[dim]{stage:>8}[/] {escape(msg)}"),
        )
    finally:
        reg.close()
    if output is OutputFormat.JSON:
        print_json({"name": result.name, "version": result.version, "digest": result.digest})
        return
    stdout().print(
        f"[green]✓[/] published {escape(result.name)}@{escape(result.version)} {result.digest}"
    )


@app.command("verify")
def verify_cmd(
    ref: NameVersion,
    registry: RegistryRef = None,
    plain_http: PlainHttp = False,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Check a published build's signed attestation against the trusted keys in the home."""
    from stackyard.components.catalog import verify
    from stackyard.components.keys import Keyring
    from stackyard.settings import Settings

    name, version = _split(ref)
    reg = _registry(registry, plain_http)
    try:
        statement = verify(reg, Keyring(Settings.load().home), name, version, fresh=True)
    finally:
        reg.close()
    if output is OutputFormat.JSON:
        print_json(
            {
                "name": name,
                "version": version,
                "digest": statement.subject_digest,
                "verified": True,
                "stages": [s.name for s in statement.stages],
            }
        )
        return
    stdout().print(
        f"[green]✓[/] {escape(name)}@{escape(version)} {statement.subject_digest} is attested and verified"
    )


@app.command("list")
def list_cmd(
    registry: RegistryRef = None, plain_http: PlainHttp = False, output: Output = OutputFormat.TEXT
) -> None:
    """List published components: name, latest version, owner, lifecycle, type and SLA."""
    from stackyard.cli.remote import target
    from stackyard.components.catalog import entries

    server = target() if registry is None else None
    if server is not None:
        from stackyard.cli.remote_backend import RemoteBackend

        rows = RemoteBackend(server).components()
    else:
        reg = _registry(registry, plain_http)
        try:
            rows = entries(reg, warn=_warn)
        finally:
            reg.close()
    if output is OutputFormat.JSON:
        print_json([r.to_json() for r in rows])
        return
    table = Table(box=None)
    for column in ("name", "latest", "owner", "lifecycle", "provides", "availability"):
        table.add_column(column, no_wrap=True)
    for r in rows:
        table.add_row(
            *(
                escape(str(x))
                for x in (
                    r.name,
                    r.latest,
                    r.owner,
                    r.lifecycle,
                    r.provides,
                    r.sla.get("availability", ""),
                )
            )
        )
    stdout().print(table)


@app.command("show")
def show_cmd(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION (default: the latest version)")],
    registry: RegistryRef = None,
    plain_http: PlainHttp = False,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Show a component: README, inputs, outputs, versions, attestation status and cost."""
    from stackyard.cli.remote import target
    from stackyard.components.catalog import details
    from stackyard.components.keys import Keyring
    from stackyard.settings import Settings

    name, _, version = ref.partition("@")
    server = target() if registry is None else None
    if server is not None:
        from stackyard.cli.remote_backend import RemoteBackend

        info = RemoteBackend(server).component(name, version or None)
    else:
        reg = _registry(registry, plain_http)
        try:
            info = details(reg, Keyring(Settings.load().home), name, version or None, warn=_warn)
        finally:
            reg.close()
    if output is OutputFormat.JSON:
        print_json(info)
        return
    con = stdout()
    con.print(
        f"[bold]{escape(info['name'])}@{escape(info['version'])}[/]  {escape(info['description'])}"
    )
    con.print(
        f"owner {escape(info['owner'])} · lifecycle {escape(info['lifecycle'])} · provides {escape(info['provides'])}"
    )
    con.print(f"versions: {escape(', '.join(info['versions']))}")
    con.print(f"digest: {info['digest']} · attestation: {escape(info['attestation'])}")
    if info["deprecated"]:
        con.print(f"[yellow]deprecated[/]: {escape(str(info['deprecated'].get('reason', '')))}")
    if info["cost"]:
        con.print(
            f"cost: {escape(info['cost']['monthly'])} {escape(info['cost']['currency'])}/month"
        )
    con.print(f"inputs: {escape(', '.join(info['inputs']) or '(none)')}")
    con.print(f"outputs: {escape(', '.join(info['outputs']))}")
    con.print()
    con.print(escape(info["readme"]))


@app.command("pull")
def pull_cmd(
    ref: NameVersion,
    to: Annotated[Path, typer.Option("--to", help="An empty or missing directory to unpack into.")],
    registry: RegistryRef = None,
    plain_http: PlainHttp = False,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Download a build, verify every digest, and unpack it safely into a directory."""
    from stackyard.components.catalog import pull

    name, version = _split(ref)
    reg = _registry(registry, plain_http)
    try:
        digest, files = pull(reg, name, version, to)
    finally:
        reg.close()
    if output is OutputFormat.JSON:
        print_json({"name": name, "version": version, "digest": digest, "files": files})
        return
    stdout().print(
        f"[green]✓[/] pulled {escape(name)}@{escape(version)} {digest} → {escape(str(to))} ({len(files)} files)"
    )


@app.command("deprecate")
def deprecate_cmd(
    ref: NameVersion,
    reason: Annotated[str, typer.Option("--reason", help="Why, and what to use instead.")],
    registry: RegistryRef = None,
    plain_http: PlainHttp = False,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Mark a published version deprecated (a notice attached to the immutable build)."""
    from stackyard.environments import publication
    from stackyard.settings import Settings

    name, version = _split(ref)
    settings = Settings.load(registry=registry)
    reg = _registry(registry, plain_http)
    try:
        done = publication.deprecate(settings, name, version, reason=reason, registry=reg)
    finally:
        reg.close()
    if output is OutputFormat.JSON:
        print_json(done.to_json())
        return
    stdout().print(f"[yellow]deprecated[/] {escape(name)}@{escape(version)}: {escape(reason)}")
    if not done.affected:
        stdout().print("  no environment runs it")
        return
    from stackyard.cli.catalog import describe

    stdout().print(f"  still running in {len(done.affected)} place(s):")
    for use in done.affected:
        stdout().print(f"    {escape(describe(use.to_json()))}")


@app.command("init")
def init_cmd(
    name: Annotated[str, typer.Argument(help="The new component's name.")],
    type_: Annotated[str, typer.Option("--type", help="The resource type it provides.")],
    to: Annotated[
        Path | None, typer.Option("--to", help="Folder to create (default: ./NAME).")
    ] = None,
    owner: Annotated[
        str | None, typer.Option("--owner", help="Owning team (default: you).")
    ] = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Scaffold a new component that passes 'component publish' as generated."""
    from stackyard.components.scaffold import scaffold
    from stackyard.settings import Settings

    dest = to or Path(name)
    files = scaffold(name, type_, dest, owner=owner or Settings.load().actor)
    if output is OutputFormat.JSON:
        print_json({"name": name, "type": type_, "path": str(dest), "files": files})
        return
    stdout().print(
        f"[green]✓[/] scaffolded {escape(name)} (provides {escape(type_)}) in {escape(str(dest))}"
    )
    stdout().print(f"  next: stackyard component publish {escape(str(dest))}")
