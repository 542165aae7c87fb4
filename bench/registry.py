"""Registry bench: publish, resolve and pull component builds on both registry backends.

    python bench/registry.py                    # local layout and a docker-registry on loopback
    python bench/registry.py --backend local    # only the local OCI image layout
    python bench/registry.py --profile          # also cProfile the timed loops (to stderr)

For each backend (the local OCI image layout in a temporary home, and a remote
``docker-registry`` started on a free loopback port and stopped at the end) it pushes
``--versions`` versions (1.0.0 ... 1.0.99) of ``local-volume`` through ``Registry.push`` (not
the publish pipeline, which runs component tests): the archive is built once with
``package.build`` and each version gets its own config blob (the component manifest with that
``metadata.version``). Then:

- *warm pull + verify*: ``manifest(name, version)`` then ``blob`` of its config and its layer,
  every one verified against its digest, ``--pull-runs`` times after one untimed pull (which
  fills the remote backend's cache). Also timed by manifest digest (what a lockfile holds),
  which the remote backend serves from its cache without a request.
- *resolve range*: ``--resolve-versions`` versions of ``local-volume-many`` (0.0.0 ... 3.9.24)
  are pushed, then ``Range.parse(--range).best(Version.parse(t) for t in tags(name))`` and
  ``resolve(name, best)`` are timed ``--resolve-runs`` times.

One JSON object on stdout (progress goes to stderr): ``pull_verify_ms`` and
``resolve_range_ms`` (the worst backend's p50), ``local`` and ``remote`` (each backend's
figures), ``versions`` and ``resolve_versions``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from stackyard import library
from stackyard.canonical import canonical_bytes
from stackyard.components.package import Build, build
from stackyard.components.registry import Registry, open_registry
from stackyard.model.versions import Range, Version

NAME = "local-volume"
MANY = "local-volume-many"
BINARY = "/usr/bin/docker-registry"
CREATED = "2024-01-01T00:00:00Z"


def log(message: str) -> None:
    print(f"[registry] {message}", file=sys.stderr, flush=True)


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def summary(samples: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / max of ``samples`` (seconds), in ms."""
    return {
        "p50": ms(quantile(samples, 0.5)),
        "p95": ms(quantile(samples, 0.95)),
        "max": ms(max(samples)),
    }


def pull_versions(count: int) -> list[str]:
    return [f"1.0.{i}" for i in range(count)]


def resolve_versions(count: int) -> list[str]:
    """``count`` versions spread over majors 0.., minors 0..9 and patches 0..24."""
    return [f"{i // 250}.{i // 25 % 10}.{i % 25}" for i in range(count)]


# -- the component build ---------------------------------------------------------------------


class Source:
    """One ``package.build`` of ``local-volume``, re-versioned without rebuilding the archive."""

    def __init__(self, tmp: Path) -> None:
        folder = tmp / "src" / NAME
        shutil.copytree(library.path(NAME), folder)
        self.build: Build = build(folder)
        self.doc = json.loads(self.build.manifest_json)

    def config(self, name: str, version: str) -> bytes:
        doc = json.loads(self.build.manifest_json)
        doc["metadata"].update(name=name, version=version)
        return canonical_bytes(doc)

    def annotations(self, name: str, version: str) -> dict[str, str]:
        meta = self.doc["metadata"]
        return {  # the shape of pipeline.build_annotations, with a fixed timestamp
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.created": CREATED,
            "org.opencontainers.image.source": "bench/registry.py",
            "org.opencontainers.image.title": name,
            "org.opencontainers.image.description": meta.get("description", ""),
            "dev.stackyard.owner": meta.get("owner", ""),
            "dev.stackyard.lifecycle": meta.get("lifecycle", ""),
            "dev.stackyard.provides": self.doc["spec"]["provides"]["type"],
        }

    def push(
        self, registry: Registry, name: str, versions: Sequence[str], budget_s: float | None = None
    ) -> tuple[float, dict[str, str], int]:
        """Push ``versions`` of ``name``; ``(seconds, version → digest, versions pushed)``.

        With ``budget_s``, stop once the pushes have taken longer than that.
        """
        digests: dict[str, str] = {}
        t0 = time.perf_counter()
        for i, version in enumerate(versions):
            pushed = registry.push(
                name=name,
                version=version,
                config=self.config(name, version),
                layer=self.build.archive,
                annotations=self.annotations(name, version),
            )
            digests[version] = pushed.digest
            if (i + 1) % 250 == 0:
                log(f"  {name}: {i + 1}/{len(versions)} pushed")
            if budget_s is not None and time.perf_counter() - t0 > budget_s:
                log(f"  {name}: push budget of {budget_s:g} s spent after {i + 1} versions")
                break
        return time.perf_counter() - t0, digests, len(digests)


# -- a docker-registry on loopback -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def distribution(root: Path, binary: str) -> Iterator[str]:
    """Start ``docker-registry`` on a free loopback port; yield ``127.0.0.1:PORT``; stop it."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'storage'}}}, "
        "delete: {enabled: true}}\n"
        f"http: {{addr: 127.0.0.1:{port}, secret: {secrets.token_hex(16)}}}\n"
    )
    out = (root / "registry.log").open("wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out.flush()
                tail = (root / "registry.log").read_text(errors="replace")[-500:]
                raise SystemExit(f"docker-registry did not start: {tail}")
            time.sleep(0.05)
        log(f"docker-registry pid {proc.pid} on 127.0.0.1:{port}")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


# -- the timed loops -------------------------------------------------------------------------


def timed(
    runs: int, once: Callable[[], Any], profile: cProfile.Profile | None = None
) -> list[float]:
    samples = []
    for _ in range(runs):
        if profile is not None:
            profile.enable()
        t0 = time.perf_counter()
        once()
        samples.append(time.perf_counter() - t0)
        if profile is not None:
            profile.disable()
    return samples


def pull(registry: Registry, name: str, reference: str) -> tuple[str, bytes, bytes]:
    """Manifest, then its config and layer blobs, each verified against its digest."""
    digest, manifest = registry.manifest(name, reference)
    config = registry.blob(name, manifest["config"]["digest"])
    layer = registry.blob(name, manifest["layers"][0]["digest"])
    return digest, config, layer


def resolve(registry: Registry, name: str, wanted: Range) -> tuple[str, str]:
    best = wanted.best(Version.parse(t) for t in registry.tags(name))
    if best is None:
        raise SystemExit(f"no version of {name} matches {wanted.text}")
    return str(best), registry.resolve(name, str(best))


def report_profile(profile: cProfile.Profile, what: str, limit: int) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.strip_dirs().sort_stats("cumulative").print_stats(limit)
    log(f"profile of {what} (cumulative):\n{out.getvalue()}")


def bench_backend(
    kind: str,
    registry: Registry,
    source: Source,
    args: argparse.Namespace,
    fresh: Callable[[], Registry],
) -> dict[str, Any]:
    """Push, pull and resolve on one backend. ``fresh`` opens a new client on the same store."""
    result: dict[str, Any] = {}
    versions = pull_versions(args.versions)
    log(f"{kind}: pushing {len(versions)} versions of {NAME}")
    seconds, digests, _ = source.push(registry, NAME, versions)
    result["push_total_s"] = round(seconds, 3)
    result["push_per_version_ms"] = ms(seconds / len(versions))

    # Warm pull + verify of one version.
    version = versions[len(versions) // 2]
    t0 = time.perf_counter()
    digest, config, layer = pull(registry, NAME, version)  # fills the remote cache
    result["pull_cold_ms"] = ms(time.perf_counter() - t0)
    if digest != digests[version] or layer != source.build.archive:
        raise SystemExit(f"{kind}: pulled {NAME}@{version} is not what was pushed")
    if config != source.config(NAME, version):
        raise SystemExit(f"{kind}: the config of {NAME}@{version} is not what was pushed")
    profile = cProfile.Profile() if args.profile else None
    by_version = timed(args.pull_runs, lambda: pull(registry, NAME, version), profile)
    if profile is not None:
        report_profile(profile, f"{kind} warm pull by version", args.profile_lines)
    by_digest = timed(args.pull_runs, lambda: pull(registry, NAME, digest))
    result["pull_verify"] = summary(by_version)
    result["pull_by_digest"] = summary(by_digest)
    result["pull_verify_ms"] = result["pull_verify"]["p50"]
    result["pull_bytes"] = len(config) + len(layer)

    # Resolve a range across many versions.
    many = resolve_versions(args.resolve_versions)
    budget = args.remote_push_budget_s if kind == "remote" else None
    log(f"{kind}: pushing {len(many)} versions of {MANY}")
    seconds, _, pushed = source.push(registry, MANY, many, budget)
    result["resolve_push_total_s"] = round(seconds, 3)
    result["resolve_push_per_version_ms"] = ms(seconds / pushed)
    result["resolve_versions"] = pushed
    wanted = Range.parse(args.range)
    best, best_digest = resolve(registry, MANY, wanted)
    result["resolved"] = best
    tags = registry.tags(MANY)
    if len(tags) != pushed:
        raise SystemExit(f"{kind}: {MANY} lists {len(tags)} tags, {pushed} were pushed")
    profile = cProfile.Profile() if args.profile else None
    samples = timed(args.resolve_runs, lambda: resolve(registry, MANY, wanted), profile)
    if profile is not None:
        report_profile(profile, f"{kind} resolve range", args.profile_lines)
    result["resolve_range"] = summary(samples)
    result["resolve_range_ms"] = result["resolve_range"]["p50"]
    # Its parts: listing the tags, parsing and picking, and resolving the pick to a digest.
    result["resolve_parts_p50_ms"] = {
        "tags": summary(timed(args.resolve_runs, lambda: registry.tags(MANY)))["p50"],
        "parse_best": summary(
            timed(args.resolve_runs, lambda: wanted.best(Version.parse(t) for t in tags))
        )["p50"],
        "resolve": summary(timed(args.resolve_runs, lambda: registry.resolve(MANY, best)))["p50"],
    }

    # A new client each time (a fresh CLI process): the local layout parses index.json again.
    def cold() -> None:
        with fresh() as other:
            if resolve(other, MANY, wanted)[1] != best_digest:
                raise SystemExit(f"{kind}: a fresh client resolved another digest")

    result["resolve_range_new_client"] = summary(timed(args.resolve_runs, cold))
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pull_verify_ms": None,
        "resolve_range_ms": None,
        "versions": args.versions,
        "resolve_versions": args.resolve_versions,
        "range": args.range,
    }
    with tempfile.TemporaryDirectory(prefix="stackyard-bench-") as tmp:
        root = Path(tmp)
        source = Source(root)
        out["archive_bytes"] = len(source.build.archive)
        if args.backend in ("local", "both"):
            home = root / "local-home"

            def fresh_local() -> Registry:
                return open_registry(None, home=home)

            with fresh_local() as registry:
                out["local"] = bench_backend("local", registry, source, args, fresh_local)
        if args.backend in ("remote", "both"):
            binary = shutil.which("docker-registry") or BINARY
            if not Path(binary).exists():
                raise SystemExit(
                    "docker-registry is not installed (apt-get install docker-registry)"
                )
            with distribution(root / "distribution", binary) as address:
                home = root / "remote-home"
                ref = f"{address}/bench"

                def fresh_remote() -> Registry:
                    return open_registry(ref, home=home, plain_http=True)

                with fresh_remote() as registry:
                    out["remote"] = bench_backend("remote", registry, source, args, fresh_remote)
    backends = [out[k] for k in ("local", "remote") if k in out]
    out["pull_verify_ms"] = max(b["pull_verify_ms"] for b in backends)
    out["resolve_range_ms"] = max(b["resolve_range_ms"] for b in backends)
    out["resolve_versions"] = min(b["resolve_versions"] for b in backends)
    out["targets_met"] = {
        "pull_verify_ms<=20": out["pull_verify_ms"] <= 20.0,
        "resolve_range_ms<=50": out["resolve_range_ms"] <= 50.0,
    }
    return out


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwind through every finally: stop the registry, clean up


def main() -> int:
    parser = argparse.ArgumentParser(description="Publish, resolve and pull on both registries.")
    parser.add_argument("--backend", choices=["local", "remote", "both"], default="both")
    parser.add_argument("--versions", type=int, default=100, help="versions pushed and pulled")
    parser.add_argument("--resolve-versions", type=int, default=1000)
    parser.add_argument("--range", default="^1.4", help="the range resolved")
    parser.add_argument("--pull-runs", type=int, default=50)
    parser.add_argument("--resolve-runs", type=int, default=20)
    parser.add_argument(
        "--remote-push-budget-s",
        type=float,
        default=120.0,
        help="stop pushing the resolve versions to the remote registry after this long",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the timed loops")
    parser.add_argument("--profile-lines", type=int, default=25)
    args = parser.parse_args()
    if args.versions < 1 or args.resolve_versions < 1:
        parser.error("--versions and --resolve-versions must be at least 1")
    signal.signal(signal.SIGTERM, _terminate)
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
