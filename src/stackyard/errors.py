"""The exception tree: every failure stackyard raises derives from ``StackyardError``.

User mistakes are *diagnostics* (see ``diagnostics.py``), collected and returned together.
Exceptions are for failures, and for carrying a batch of diagnostics out of a call that
cannot go on. Each class's ``exit_code`` is the CLI's exit status (``docs/errors.md`` has the
table); a class without one inherits its parent's, and 1 means a bug. Classes defined outside
this module name it in brackets. ``tests/unit/test_error_tree.py`` keeps this drawing and the
classes the same. The tree::

    StackyardError                   exit 1: an internal error (a bug)
    ├── InvalidInputError            carries .diagnostics; exit 2
    │   ├── PlaceholderError         a bad or unresolvable ${...} (.path, .expression)
    │   └── JobNotFoundError         [jobs.model] no job has this id (.job_id; HTTP 404)
    ├── CancelledError               a confirmation was declined; nothing was changed; exit 10
    ├── DriftFoundError              `stackyard drift` found reality differing from the records; exit 11
    ├── ProviderError                raised by providers only (.address); exit 7
    │   ├── ProviderTransientError   retrying may help (timeouts, lost connections)
    │   ├── ProviderPermanentError   retrying will not help (bad config, refused)
    │   │   └── ForeignObjectError   another owner's (or an unlabelled) object; nothing written
    │   ├── S3ApiError               [providers.s3.api] an S3 or IAM error reply, until translated
    │   ├── RabbitApiError           [providers.rabbitmq.client] a management API error reply, until translated
    │   └── AdminError               [providers.proxy.admin] a Caddy admin API error reply, until translated
    ├── ApplyFailedError             an apply stopped: a backend failed (.env, .failed); exit 7
    ├── WorkloadFailedError          a workload did not start or become ready (.workload); exit 7
    ├── EngineError                  plan/apply failures that are not a provider's (a bug)
    │   ├── StalePlanError           the state moved since the plan was made; exit 3
    │   └── CycleError               the resource graph has a cycle (.cycle)
    ├── StateError                   the state store failed or holds something unusable; exit 7
    │   ├── StoreUnavailableError    the store cannot be reached (operations fail closed)
    │   ├── LockHeldError            another writer holds the environment lock (.holder); exit 4
    │   └── LockLostError            our lease expired or was taken over (fencing); exit 4
    ├── InvalidStatusError           a status value its enum does not know (.enum, .value)
    │   └── InvalidTransitionError   a status change its transition table forbids (.old, .new)
    ├── PolicyDeniedError            a policy denied it (.decision_id, .diagnostics); exit 5
    ├── PermissionDeniedError        RBAC: the actor holds no role allowing it (.action); exit 6
    │   └── Forbidden                [portal.web] a portal form without its CSRF token (HTTP 403)
    ├── NotAuthenticated             [identity.errors] no valid credential (HTTP 401); exit 6
    │   ├── TooManyAttempts          [identity.errors] too many failures (.retry_after; HTTP 429)
    │   ├── SignInNeeded             [portal.web] a portal page without a session (sign-in page)
    │   └── SignInFailed             [portal.oidc_signin] an OIDC sign-in that cannot go on (.status)
    ├── IdentityUnavailableError     [identity.errors] the OIDC keys cannot be read; exit 7
    ├── JobConflictError             [jobs.model] the job is past that (.job_id; HTTP 409); exit 2
    ├── VerificationFailedError      audit chain, release digest or policy tests failed; exit 8
    │   └── AttestationError         [components.attest] malformed, or a stage did not pass
    │       ├── SignatureError       [components.attest] no signature verifies
    │       ├── UntrustedKeyError    [components.attest] signed only by untrusted keys (.key_ids)
    │       ├── MissingAttestationError [components.attest] the build has none; exit 9
    │       └── SubjectMismatchError [components.attest] it is about another build
    ├── RegistryError                [components.oci] a registry operation failed; exit 7
    │   ├── InvalidReferenceError    [components.oci] a malformed name, version or digest; exit 2
    │   ├── NotFoundError            [components.oci] no such component, version or blob; exit 2
    │   ├── ImmutableTagError        [components.oci] the version is already published; exit 2
    │   ├── DigestMismatchError      [components.oci] content does not hash to its digest; exit 8
    │   ├── NotAComponentError       [components.oci] the artifact is not a stackyard build; exit 2
    │   ├── TagMismatchError         [components.oci] a tag names another build than inside; exit 2
    │   ├── RegistryAuthError        [components.oci] the registry refused the credentials
    │   └── RegistryUnavailableError [components.oci] unreachable, or not an OCI registry
    ├── KeyringError                 [components.keys] a key is missing, unsafe or wrong; exit 2
    ├── RegoError                    [policy.rego] a policy does not compile or evaluate; exit 2
    └── SandboxError                 [policy.sandbox] past a limit; RegoError carries it out

Every exception carries its subject (``.uid``, ``.address``, ``.component``, ``.env``)
where it has one, so renderers can point at it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

    exit_code = 7
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
    """The state store failed, or holds something stackyard cannot use."""

    exit_code = 7


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


class InvalidStatusError(StackyardError):
    """A status (read back from the store, say) that is no member of its enum; a bug or a
    record written by a newer stackyard, never a user's mistake (exit 1)."""

    def __init__(self, enum: str, value: str, *, subject: str = "") -> None:
        where = f" of {subject}" if subject else ""
        super().__init__(
            f"Unknown {enum} '{value}'{where}",
            hint="The record was written by another version of stackyard, or edited by hand; "
            "use the version that wrote it.",
        )
        self.enum = enum
        self.value = value
        self.subject = subject


class InvalidTransitionError(InvalidStatusError):
    """A status change that its enum's transition table does not allow; refused before
    anything is written. Always a bug in the caller (exit 1)."""

    def __init__(self, enum: str, old: object, new: object, *, subject: str = "") -> None:
        StackyardError.__init__(
            self,
            f"Invalid {enum} transition {'(new)' if old is None else repr(str(old))} -> "
            f"{str(new)!r}" + (f" of {subject}" if subject else ""),
            hint="This is a bug in stackyard: please report it with the command you ran.",
        )
        self.enum = enum
        self.value = str(new)
        self.subject = subject
        self.old = old
        self.new = new


class CancelledError(StackyardError):
    """The user declined a confirmation (or interrupted one); nothing was changed."""

    exit_code = 10


class DriftFoundError(StackyardError):
    """``stackyard drift`` found resources that differ from their records (the findings were
    printed; ``--fix`` repairs them through the governed road)."""

    exit_code = 11


class ApplyFailedError(StackyardError):
    """An apply stopped because a backend failed; ``failed`` maps each address to why.

    What was applied before the failure is recorded; deploying again continues from there.
    """

    exit_code = 7

    def __init__(
        self, message: str, *, env: str, failed: Mapping[str, str], hint: str | None = None
    ) -> None:
        reasons = "; ".join(f"{address}: {why}" for address, why in sorted(failed.items()))
        super().__init__(f"{message}: {reasons}" if reasons else message, hint=hint)
        self.env = env
        self.failed = dict(failed)


class WorkloadFailedError(StackyardError):
    """The runtime could not run a workload: it did not start, or did not become ready.

    What the deployment applied stays applied; the workload's log lines are in the message.
    """

    exit_code = 7

    def __init__(self, message: str, *, workload: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.workload = workload


class VerificationFailedError(StackyardError):
    """A check of integrity or of results failed: the audit chain, a release's digest, a
    signature, policy tests. Nothing was used that did not pass it."""

    exit_code = 8
