"""``local.directory``: a bucket as a directory, labelled by a marker file inside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from stackyard.providers.api import (
    Applied,
    CreateRequest,
    DeleteRequest,
    KindConfig,
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
        root = Path(cfg.root).expanduser() if cfg.root else layout.home_dir(cfg.home) / "buckets"
        return root.absolute() / name

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
            layout.claim(path, req.meta.label, address=req.meta.address, mode=0o755)
            return Applied(outputs=_outputs(path), physical_id=str(path))

    def update(self, req: UpdateRequest) -> Applied:
        """Nothing changes in place (every field replaces); re-creates a vanished directory."""
        return self.create(CreateRequest(meta=req.meta, config=req.config))

    def delete(self, req: DeleteRequest) -> None:
        """Remove the directory and its contents if the marker is ours; missing is success."""
        with layout.provider_errors(req.meta.address):
            path = self._path(req.meta, req.config)
            layout.remove(path, req.meta.label, address=req.meta.address)


def _outputs(path: Path) -> dict[str, Any]:
    return {"path": str(path), "source": str(path)}
