"""The gateway's exception tree.

Every failure a person or a peer can see is a :class:`GatewayError` with a stable
``code`` (what receipts and the audit log carry), a one-line human message and
the CLI exit status. Foreign exceptions (gpg, paramiko, SQLAlchemy, pydantic)
are translated at the boundary with ``raise X from exc`` so callers never need to
know which library failed::

    GatewayError                 exit 1
    ├── ConfigError              exit 2   a config key is wrong (message names the key path)
    ├── UsageError               exit 2   a command-line argument is wrong
    ├── KeyPolicyError           exit 2   a key file is weak, expired, revoked or unreadable
    ├── CryptoError              exit 1   E_DECRYPT, E_NOT_FOR_US, E_UNSIGNED, ... (see crypto.engine)
    └── AuditError               exit 1   the audit chain does not verify
"""

from __future__ import annotations


class GatewayError(Exception):
    """The gateway failed."""

    code: str = "E_GATEWAY"
    exit_code: int = 1

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip().splitlines()[0]
        if code is not None:
            self.code = code
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class ConfigError(GatewayError):
    """The configuration is not valid."""

    code = "E_CONFIG"
    exit_code = 2

    def __init__(self, problems: list[str] | str, *, source: str = "") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + p for p in self.problems))


class UsageError(GatewayError):
    """A command-line argument is not valid."""

    code = "E_USAGE"
    exit_code = 2


class KeyPolicyError(GatewayError):
    """A key file does not meet the key policy."""

    code = "E_KEY"
    exit_code = 2


class CryptoError(GatewayError):
    """An OpenPGP operation failed.

    Besides the message (the one receipts carry), what the message itself named, so a
    person opening a file can be told whose it is: *recipients*, the key ids it is
    encrypted to (``ENC_TO``, in order; ``0000000000000000`` for a hidden recipient), and
    *signer*, the key id or fingerprint of the signature's key when one was seen.
    """

    code = "E_CRYPTO"

    def __init__(self, message: str | None = None, *, code: str | None = None,
                 recipients: tuple[str, ...] = (), signer: str | None = None) -> None:
        super().__init__(message, code=code)
        self.recipients = recipients
        self.signer = signer


class AuditError(GatewayError):
    """The audit log does not verify."""

    code = "E_AUDIT"
