"""The one exception tree of the appliance.

Every error the operator can see is an `ApplianceError`. Each carries what failed, where,
and what to do next, and an exit code per docs/interface.md: 1 for a refusal or a
failure (policy violation, integrity failure, wrong passphrase, no network isolation,
training failure), 2 for bad usage or bad input (malformed policy, recipe or dataset). Integrity
failures are deliberately opaque about which check failed.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class ApplianceError(Exception):
    """Base of every error the appliance reports to an operator."""

    exit_code = EXIT_FAILED
    default_hint = ""

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint if hint is not None else self.default_hint

    def line(self) -> str:
        """One line for stderr: what failed, where, what to do next."""
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text} ({self.hint})" if self.hint else text


# --- bad usage or bad input: exit 2 -------------------------------------------------------
class InputError(ApplianceError):
    """Bad usage or malformed input."""

    exit_code = EXIT_BAD_INPUT


class UsageError(InputError):
    """The command line is wrong."""

    default_hint = "see appliance --help"


class PolicyError(InputError):
    """A policy file is malformed or fails the schema."""

    default_hint = "fix the listed keys; appliance policy schema prints every field"

    def __init__(self, message: str, *, where: str | None = None, problems: list[str] | None = None,
                 hint: str | None = None):
        super().__init__(message, where=where, hint=hint)
        self.problems = problems or []


class RecipeError(InputError):
    """A training recipe is malformed."""


class DatasetFormatError(InputError):
    """A dataset file cannot be read as a fine-tuning dataset."""


class ModelFormatError(InputError):
    """A base model directory or file is malformed or unsafe to open."""


# --- refusals and failures: exit 1 --------------------------------------------------------
class PolicyViolation(ApplianceError):
    """The active policy forbids what was asked."""


class HomeError(ApplianceError):
    """The appliance home is missing, not initialised, or already initialised."""


class PassphraseError(ApplianceError):
    """A passphrase is wrong, missing or could not be read."""


class IntegrityError(ApplianceError):
    """Something failed verification. Opaque on purpose: it never says which check failed."""


class VaultError(ApplianceError):
    """The encrypted dataset vault failed."""


class AuditError(ApplianceError):
    """The audit log could not be written or does not verify."""


class SigningError(ApplianceError):
    """An artifact could not be signed or its signature does not verify."""


class ScrubError(ApplianceError):
    """PII scrubbing failed or left more than the policy allows."""


class IsolationError(ApplianceError):
    """The kernel network isolation the policy requires is not available."""


class TrainingError(ApplianceError):
    """A training run failed."""


class NoSpaceError(ApplianceError):
    """A write failed because the file system is full (or a file size limit was hit).

    The writer removed what it had half-written; the line names what could not be written.
    """

    default_hint = "free some space there and run the command again"


class InstallError(ApplianceError):
    """The installation does not match the lock."""

