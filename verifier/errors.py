"""One error hierarchy: what cannot be done, said once, presented by each adapter in its own way.

A `VerifierError`'s message is for the person using the product (one CLI line, a page, the API's
`message`); its class carries the HTTP status, the API's machine code and the CLI's exit status,
so no adapter ever matches on message text. Details useful to an attacker go to logs, not here.
Verdicts are not errors: a forged or malformed code is an answer (`codes.InvalidCode` carries its
reason), never one of these.
"""

from __future__ import annotations


class VerifierError(Exception):
    """An operation that cannot be done as asked; the message says why, for the user."""

    http_status = 400
    api_code = "bad-request"
    exit_code = 2  # the CLI's status for bad input; a failed operation's class says 1 where commands always exited 1

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class InvalidInput(VerifierError):
    """A parameter, argument or file that is not what the operation takes."""


class NotFound(VerifierError):
    """The thing named does not exist (or is not the caller's to see)."""

    http_status = 404
    api_code = "not-found"


class Conflict(VerifierError):
    """The operation contradicts the current state (already recalled, already revoked...)."""

    http_status = 409
    api_code = "conflict"


class Forbidden(VerifierError):
    """The caller may not do this."""

    http_status = 403
    api_code = "forbidden"


class Unavailable(VerifierError):
    """Cannot be done now; try again later (`retry_after` seconds, when known)."""

    http_status = 503
    api_code = "busy"

    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Tampered(VerifierError):
    """A check ran and found the data edited: exit status 1, like a failed verification."""

    http_status = 409
    api_code = "tampered"
    exit_code = 1
