"""``local.directory``: a bucket as a directory, labelled by a marker file inside it."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from stackyard.host import accounts
from stackyard.providers.api import (
    Applied,
    CreateRequest,
    DeleteRequest,
    KindConfig,
    Labelled,
    NamingRule,
    Observed,
    ObserveRequest,
    ResourceMeta,
    UpdateRequest,
    config_field,
)
from stackyard.providers.local import layout


class DirectoryConfig(KindConfig):
    """Config of ``local.directory``."""

    name: str = config_field(
        "",
        replace_on_change=True,
        pattern=r"^$|" + layout.NAME_PATTERN,
        description="Directory name; empty means the physical name.",
    )
    root: str = config_field(
        "",
        replace_on_change=True,
        description="Parent directory; empty means <home>/buckets.",
    )
    home: str = config_field(
        "",
        replace_on_change=True,
        description="The stackyard home; empty means $STACKYARD_HOME or ~/.stackyard.",
    )


class Directory:
    """``local.directory``: outputs ``path`` and ``source`` (the same absolute path)."""

    name: ClassVar[str] = "local.directory"
    config_model: ClassVar[type[KindConfig]] = DirectoryConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    naming: ClassVar[NamingRule] = NamingRule(max_length=63)

    def _path(self, meta: ResourceMeta, raw: Any) -> Path:
        cfg = DirectoryConfig.model_validate(dict(raw))
        name = layout.checked_name(cfg.name or meta.physical_name, address=meta.address)
        root = (
            Path(cfg.root).expanduser() if cfg.root else _buckets(layout.home_dir(cfg.home), name)
        )
        return root.absolute() / name

    def sweep_scope(self, config: Mapping[str, Any]) -> str:
        """The parent folder(s): buckets are listed once per parent."""
        return ":".join(str(p) for p in _parents(config))

    def labelled(self, config: Mapping[str, Any], prefix: str, *, limit: int) -> list[Labelled]:
        """Directories under the parent(s) whose marker starts with ``prefix``; no writes."""
        keep = {"root": config.get("root", ""), "home": config.get("home", "")}
        found: list[Labelled] = []
        with layout.provider_errors("sweep"):
            for parent in _parents(config):
                for child in sorted(parent.iterdir()) if parent.is_dir() else []:
                    label = layout.marker_label(child)
                    if label is not None and label.startswith(prefix) and len(found) < limit:
                        found.append(Labelled(child.name, label, keep))
        return found

    def observe(self, req: ObserveRequest) -> Observed | None:
        """Stat the directory and read its marker. No writes; safe to repeat.

        Missing: ``None``. No marker or another label: ``managed=False``.
        """
        with layout.provider_errors(req.meta.address):
            path = self._path(req.meta, req.config)
            owner = layout.ownership(path, req.meta.label)
            if owner is layout.Ownership.MISSING:
                return None
            if owner is layout.Ownership.FOREIGN:
                return Observed(
                    config={}, managed=False, detail=f"{path} belongs to {layout.owner_of(path)}"
                )
            return Observed(config={"name": path.name}, outputs=_outputs(path))

    def create(self, req: CreateRequest) -> Applied:
        """Make the directory and its marker; converge on ours, refuse a foreign one."""
        with layout.provider_errors(req.meta.address):
            path = self._path(req.meta, req.config)
            if path.parent.parent == SHARED_BUCKETS:
                _hand_over(path, req.meta, req.config)
            else:
                layout.claim(path, req.meta.label, address=req.meta.address, mode=0o755)
            return Applied(outputs=_outputs(path), physical_id=str(path))

    def update(self, req: UpdateRequest) -> Applied:
        """Nothing changes in place (every field replaces); re-creates a vanished directory."""
        return self.create(CreateRequest(meta=req.meta, config=req.config))

    def delete(self, req: DeleteRequest) -> None:
        """Remove the directory and its contents if the marker is ours; missing is success."""
        with layout.provider_errors(req.meta.address):
            path = self._path(req.meta, req.config)
            recorded = req.outputs.get("path") == str(path)
            layout.remove(path, req.meta.label, address=req.meta.address, recorded=recorded)
            if path.parent.parent == SHARED_BUCKETS:
                with contextlib.suppress(OSError):  # this home's last bucket: tidy up
                    path.parent.rmdir()
                home = layout.home_dir(DirectoryConfig.model_validate(dict(req.config)).home)
                purpose = accounts.env_purpose(home, req.meta.env)
                accounts.remove(purpose, unless_owning=accounts.leftovers())


#: Under root, buckets live here (``<hash of the home>/<name>``), out of the 0700 home.
SHARED_BUCKETS = Path("/var/lib/stackyard/buckets")


def _parents(config: Mapping[str, Any]) -> list[Path]:
    """Every folder a bucket of ``config`` may live in (the home's, and the shared one)."""
    cfg = DirectoryConfig.model_validate(dict(config))
    if cfg.root:
        return [Path(cfg.root).expanduser().absolute()]
    home = layout.home_dir(cfg.home)
    inside = (home / "buckets").absolute()
    shared = _buckets(home, "\0").absolute()  # a name no bucket has: the shared folder
    return [inside] if shared == inside else [inside, shared]


def _buckets(home: Path, name: str) -> Path:
    """The parent of a bucket: ``<home>/buckets``, or under root, where workloads run as
    their environment's own account and cannot enter the 0700 home, a folder of this home's
    in ``SHARED_BUCKETS``. A bucket an older version made in the home stays there."""
    inside = home / "buckets"
    if os.geteuid() != 0 or (inside / name).exists():
        return inside
    return SHARED_BUCKETS / hashlib.sha256(str(home).encode()).hexdigest()[:16]


def _hand_over(path: Path, meta: ResourceMeta, raw: Any) -> None:
    """Claim a shared bucket and give it to its environment's workload account (0700); the
    folders above it are root's and only traversable (0711)."""
    # /var/lib/stackyard itself may not exist yet on a machine that never ran a workload
    SHARED_BUCKETS.parent.mkdir(parents=True, exist_ok=True)
    for folder in (SHARED_BUCKETS, path.parent):
        folder.mkdir(mode=0o711, exist_ok=True)
        folder.chmod(0o711)
    layout.claim(path, meta.label, address=meta.address, mode=0o700)
    home = layout.home_dir(DirectoryConfig.model_validate(dict(raw)).home)
    account = accounts.ensure(accounts.env_purpose(home, meta.env), f"stackyard workloads {home}")
    if account is not None:
        os.chown(path, account.uid, account.gid)
    path.chmod(0o700)


def _outputs(path: Path) -> dict[str, Any]:
    return {"path": str(path), "source": str(path)}
