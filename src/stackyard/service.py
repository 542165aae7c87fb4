"""The service layer: operations the CLI (and later the API and portal) call. No rendering here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stackyard import library
from stackyard.model.status import AuditResult
from stackyard.settings import Settings

if TYPE_CHECKING:
    from stackyard.components.testing import TestOutcome
    from stackyard.model.component import ComponentManifest

Progress = Callable[[str], None]


@dataclass
class InitResult:
    """What ``stackyard init`` did."""

    home: str
    database: str
    registry: str
    key_id: str
    published: list[dict[str, Any]] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    #: library components whose tests cannot pass on this machine: ref and the first reason
    not_published: list[dict[str, str]] = field(default_factory=list)
    #: library components whose tests passed here before for this very code (not run again)
    tests_reused: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "home": self.home,
            "database": self.database,
            "registry": self.registry,
            "key_id": self.key_id,
            "published": self.published,
            "already_published": self.already,
            "not_published": self.not_published,
            "tests_reused": self.tests_reused,
        }


def init_home(settings: Settings, *, progress: Progress | None = None) -> InitResult:
    """Create the home (state database, local registry, signing key) and publish the built-in
    library through the full pipeline, attested. Idempotent: what exists is kept, and library
    versions already published are skipped."""
    from stackyard.components.catalog import versions
    from stackyard.components.keys import Keyring
    from stackyard.components.pipeline import publish
    from stackyard.components.registry import open_registry
    from stackyard.home import enforce_private
    from stackyard.model.component import load_component
    from stackyard.providers.registry import ProviderRegistry
    from stackyard.state import open_store

    say = progress or (lambda _msg: None)
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    enforce_private(settings.home)  # also a home made by hand, or by an older version
    store = open_store(settings)
    try:
        from stackyard.state.governance import Governance

        gov = Governance(store, home=settings.home)
        if gov.bootstrap(settings.actor):
            gov.append(
                actor=settings.actor,
                action="access.manage",
                target=f"user:{settings.actor}",
                result=AuditResult.OK,
                detail={"grant": {"role": "admin", "scope": "org"}, "bootstrap": True},
            )
            say(f"granted admin to {settings.actor} (the first user of this home)")
    finally:
        store.close()
    ring = Keyring(settings.home)
    if not ring.has_signing_key():
        ring.generate()
        say(f"generated signing key {ring.key_id()}")
    registry = open_registry(
        settings.registry, home=settings.home, plain_http=settings.registry_plain_http
    )
    result = InitResult(str(settings.home), store.url, registry.location, ring.key_id())
    kinds = ProviderRegistry.discover()
    try:
        todo = []
        for name in library.names():
            manifest = load_component(library.path(name))
            if manifest.version in versions(registry, manifest.name):
                result.already.append(manifest.ref)
                say(f"{manifest.ref} already published")
            else:
                todo.append((name, manifest))
        # The component tests start real local servers (a RabbitMQ node takes seconds):
        # they run side by side, then the builds are pushed and signed one by one.
        if todo:
            say(f"testing {len(todo)} library component(s) on the local cloud")
        tested = _test_all(todo)
        result.tests_reused = sorted(
            manifest.ref
            for name, manifest in todo
            if tested[name] and all(o.cached_at is not None for o in tested[name])
        )
        if result.tests_reused:
            say(
                f"{len(result.tests_reused)} component test run(s) reused: they passed on this "
                "machine with this very code (STACKYARD_TEST_CACHE=0 runs them again)"
            )
        for name, manifest in todo:
            outcomes = tested[name]
            failed = [d for o in outcomes if not o.ok for d in o.diagnostics]
            if failed:
                # A server this machine does not have (RabbitMQ, MariaDB, Caddy): the rest
                # of the library is published, and 'stackyard init' again adds it later.
                reason = failed[0].detail or failed[0].summary
                result.not_published.append({"component": manifest.ref, "reason": reason})
                say(f"{manifest.ref} not published: {reason}")
                continue
            say(f"publishing {manifest.ref}")
            published = publish(
                library.path(name), registry=registry, keyring=ring, kinds=kinds, tested=outcomes
            )
            result.published.append(
                {"name": published.name, "version": published.version, "digest": published.digest}
            )
    finally:
        registry.close()
    return result


def _test_all(todo: list[tuple[str, ComponentManifest]]) -> dict[str, list[TestOutcome]]:
    """Each library component's test outcomes, run by a few processes at once: each test
    brings up its own throw-away home and servers (the local providers find that home in
    the process's environment, so tests of one process cannot overlap). A pass this machine
    has seen for this very code is reused (``components.testcache``); failures never are."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from stackyard.components.testcache import TestCache

    cache = TestCache.from_env()
    results: dict[str, list[TestOutcome]] = {}
    if cache is not None:  # passes this machine has seen for this very code
        for name, _ in todo:
            hit = cache.get(library.path(name))
            if hit is not None:
                results[name] = hit
    left = [(name, manifest) for name, manifest in todo if name not in results]
    if len(left) <= 1:
        results.update({name: _test_one(name) for name, _ in left})
    else:
        context = multiprocessing.get_context("spawn")  # never fork a process with threads
        # Those that boot a server (a RabbitMQ node takes seconds) first, so none starts last.
        ordered = sorted(left, key=lambda item: (not item[0].endswith("-server"), item[0]))
        with ProcessPoolExecutor(max_workers=3, mp_context=context) as pool:
            futures = {name: pool.submit(_test_one, name) for name, _ in ordered}
            results.update({name: future.result() for name, future in futures.items()})
    if cache is not None:
        for name, _ in left:
            cache.put(library.path(name), results[name])
    return results


def _test_one(name: str) -> list[TestOutcome]:
    """The component tests of the library's ``name`` (a failure of the runner itself is a
    failed outcome: nothing but plain data crosses the process boundary)."""
    from stackyard.components.testing import TestOutcome, run_tests
    from stackyard.diagnostics import error
    from stackyard.model.component import load_component
    from stackyard.providers.registry import ProviderRegistry

    try:
        manifest = load_component(library.path(name))
        return run_tests(library.path(name), manifest, kinds=ProviderRegistry.discover())
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        return [TestOutcome(name, False, (error("Component tests failed", detail),))]
