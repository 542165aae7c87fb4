"""The exception tree: every failure stackyard raises derives from ``StackyardError``.

User mistakes are *diagnostics* (see ``diagnostics.py``), collected and returned together.
Exceptions are for failures, and for carrying a batch of diagnostics out of a call that
cannot go on. The tree::

    StackyardError
    ├── InvalidInputError          carries .diagnostics; the CLI exits 2
    │   └── PlaceholderError       a bad or unresolvable ${...} (.path, .expression)
    ├── ProviderError              raised by providers only (.address)
    │   ├── ProviderTransientError retrying may help (timeouts, lost connections)
    │   └── ProviderPermanentError retrying will not help (bad config, refused)
    │       └── ForeignObjectError another owner's (or an unlabelled) object; nothing written
    ├── EngineError                plan/apply failures that are not a provider's
    │   ├── StalePlanError         the state moved since the plan was made
    │   └── CycleError             the resource graph has a cycle (.cycle)
    ├── StateError                 the state store
    │   ├── StoreUnavailableError  the store cannot be reached (operations fail closed)
    │   ├── LockHeldError          another writer holds the environment lock (.holder)
    │   └── LockLostError          our lease expired or was taken over (fencing)
    ├── PolicyDeniedError          a policy denied it (.decision_id, .diagnostics); exit 5
    └── PermissionDeniedError      RBAC: the actor holds no role allowing it (.action); exit 6

Every exception carries its subject (``.uid``, ``.address``, ``.component``, ``.env``)
where it has one, so renderers can point at it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stackyard.diagnostics import Diagnostic


class StackyardError(Exception):
    """Root of all stackyard errors. ``hint`` is a sentence telling the user what to do."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class InvalidInputError(StackyardError):
    """The user's input is invalid; ``diagnostics`` says every way in which it is."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        diagnostics: Sequence[Diagnostic] = (),
        *,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.diagnostics = tuple(diagnostics)


class PlaceholderError(InvalidInputError):
    """A placeholder is malformed, or names a root or key that does not exist."""

    def __init__(self, message: str, *, path: str = "", expression: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.expression = expression


class ProviderError(StackyardError):
    """A provider could not do what it was asked. Only providers raise it."""

    transient = False

    def __init__(self, message: str, *, address: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.address = address


class ProviderTransientError(ProviderError):
    """A failure that may go away by itself: a timeout, a lost connection, a busy server."""

    transient = True


class ProviderPermanentError(ProviderError):
    """A failure that will repeat until something changes: bad config, refused permission."""


class ForeignObjectError(ProviderPermanentError):
    """The object at the name is not ours (another installation's, or unlabelled).

    Raised before anything is written, so the call it ends changed nothing.
    """


class EngineError(StackyardError):
    """The engine cannot plan or apply."""


class StalePlanError(EngineError):
    """The plan was computed against a state that has since changed."""

    exit_code = 3


class CycleError(EngineError):
    """The resource graph has a cycle."""

    def __init__(self, cycle: Sequence[str]) -> None:
        super().__init__(
            "Dependency cycle: " + " -> ".join([*cycle, cycle[0]] if cycle else []),
            hint="Break the cycle by removing one of the references between these resources.",
        )
        self.cycle = tuple(cycle)


class StateError(StackyardError):
    """The state store failed."""


class StoreUnavailableError(StateError):
    """The state store cannot be reached. Writers fail closed."""


class LockHeldError(StateError):
    """Another writer holds the environment's lock."""

    exit_code = 4

    def __init__(
        self, env: str, *, holder: str, lock_id: str, expires_at: str, waited_s: float = 0.0
    ) -> None:
        waited = f" after waiting {waited_s:g} s" if waited_s else ""
        super().__init__(
            f"Environment '{env}' is locked by {holder} (lock {lock_id}, lease until {expires_at}){waited}",
            hint=(
                "Wait for the other operation to finish (--lock-timeout waits for it). If its "
                "process is gone, the lease expires by itself, or run "
                f"'stackyard state force-unlock {env} {lock_id}'."
            ),
        )
        self.env = env
        self.holder = holder
        self.lock_id = lock_id
        self.expires_at = expires_at


class LockLostError(StateError):
    """This writer's lease expired or was taken over; it must stop writing."""

    exit_code = 4


class PolicyDeniedError(StackyardError):
    """Policies denied the operation; ``diagnostics`` holds each deny with its policy."""

    exit_code = 5

    def __init__(
        self,
        message: str,
        diagnostics: Sequence[Diagnostic] = (),
        *,
        decision_id: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.diagnostics = tuple(diagnostics)
        self.decision_id = decision_id


class PermissionDeniedError(StackyardError):
    """The actor holds no role that allows ``action`` on the target (deny by default)."""

    exit_code = 6

    def __init__(self, message: str, *, action: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.action = action
