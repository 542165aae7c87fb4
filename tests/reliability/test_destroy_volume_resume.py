"""A volume (``local.directory``) delete that stopped half way is finished by the re-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stackyard.errors import ProviderPermanentError
from stackyard.providers.api import CreateRequest, DeleteRequest, ResourceMeta
from stackyard.providers.local import layout
from stackyard.providers.local.directory import Directory

META = ResourceMeta(
    address="w/volume:default:data/directory",
    kind="local.directory",
    env="tvol",
    physical_name="tvol-data",
)


def _make(root: Path, files: int = 50) -> tuple[Directory, dict[str, str], dict[str, str]]:
    kind = Directory()
    config = {"root": str(root)}
    applied = kind.create(CreateRequest(meta=META, config=config))
    path = Path(applied.outputs["path"])
    for i in range(files):
        sub = path / f"d{i % 5}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i}").write_text("x" * 100)
    return kind, config, dict(applied.outputs)


def test_marker_gone_contents_left_is_finished(tmp_path: Path) -> None:
    """What an older delete killed after the marker went left behind: the re-run finishes."""
    kind, config, outputs = _make(tmp_path)
    path = Path(outputs["path"])
    (path / layout.MARKER).unlink()  # the marker went first, then the kill
    kind.delete(DeleteRequest(meta=META, config=config, outputs=outputs))
    assert not path.exists()


def test_empty_folder_without_marker_is_finished(tmp_path: Path) -> None:
    """Killed between removing the marker (last) and removing the folder."""
    kind, config, outputs = _make(tmp_path, files=0)
    path = Path(outputs["path"])
    (path / layout.MARKER).unlink()
    kind.delete(DeleteRequest(meta=META, config=config, outputs={}))
    assert not path.exists()


def test_unmarked_unrecorded_folder_with_data_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / META.physical_name
    path.mkdir()
    (path / "theirs").write_text("keep me")
    with pytest.raises(ProviderPermanentError, match="no stackyard marker"):
        Directory().delete(DeleteRequest(meta=META, config={"root": str(tmp_path)}, outputs={}))
    assert (path / "theirs").exists()


def test_foreign_marker_is_refused_even_when_recorded(tmp_path: Path) -> None:
    path = tmp_path / META.physical_name
    path.mkdir()
    (path / layout.MARKER).write_text("stackyard:other:x\n")
    with pytest.raises(ProviderPermanentError, match="not owned"):
        Directory().delete(
            DeleteRequest(meta=META, config={"root": str(tmp_path)}, outputs={"path": str(path)})
        )
    assert path.exists()


_WORKER = """
import sys
from stackyard.providers.api import DeleteRequest, ResourceMeta
from stackyard.providers.local.directory import Directory
meta = ResourceMeta(address=sys.argv[2], kind="local.directory", env=sys.argv[3],
                    physical_name=sys.argv[4])
print("go", flush=True)
Directory().delete(DeleteRequest(meta=meta, config={"root": sys.argv[1]},
                                 outputs={"path": sys.argv[5]}))
"""


@pytest.mark.timeout(300)
def test_kill_9_during_delete_then_rerun_finishes(tmp_path: Path) -> None:
    """kill -9 at staggered points of a delete of 2,000 files; every re-run finishes."""
    for attempt, delay in enumerate((0.0, 0.02, 0.05, 0.1, 0.2)):
        root = tmp_path / f"r{attempt}"
        kind, config, outputs = _make(root, files=2000)
        path = Path(outputs["path"])
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WORKER,
                str(root),
                META.address,
                META.env,
                META.physical_name,
                str(path),
            ],
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        kind.delete(DeleteRequest(meta=META, config=config, outputs=outputs))
        assert not path.exists()
