"""Partner secrets at rest: encrypted with a key derived from the deployment's master key.

HMAC verification needs the partner's secret itself, so secrets cannot be stored as one-way
hashes; they are encrypted (Fernet: AES-128-CBC with HMAC-SHA256, from ``cryptography``) under a
key derived with HKDF-SHA256 from ``entry.master_key``. ``entry.previous_master_keys`` still decrypt,
so the master key can rotate (``sceneos entry partners reencrypt``).

Without a master key, a SQLite (development) deployment uses :data:`DEV_MASTER_KEY` and says so in
the log; a server database refuses to start.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import ConfigError

DEV_MASTER_KEY = "sceneos-insecure-development-master-key-for-sqlite-only"
_SALT = b"sceneos.entry.secrets.v1"


def _fernet(master_key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=b"partner-secrets").derive(
        master_key.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(derived))


class SecretCipher:
    """Encrypts with the current master key, decrypts with the current or any previous one."""

    def __init__(self, master_key: str, previous: list[str] | None = None) -> None:
        if len(master_key) < 16:
            raise ConfigError("must be at least 16 characters", key="entry.master_key")
        self._cipher = MultiFernet([_fernet(master_key)] + [_fernet(key) for key in previous or []])

    def __repr__(self) -> str:
        return "SecretCipher(<master key hidden>)"

    def encrypt(self, secret: str) -> str:
        return self._cipher.encrypt(secret.encode("utf-8")).decode("ascii")

    def seal(self, data: bytes) -> bytes:
        """Encrypt bytes at rest (stored answers that carry a secret, see idempotency)."""
        return self._cipher.encrypt(data)

    def unseal(self, token: bytes) -> bytes:
        try:
            return self._cipher.decrypt(token)
        except InvalidToken:
            raise ConfigError("a stored answer cannot be decrypted: entry.master_key changed without keeping the "
                              "old one in entry.previous_master_keys", key="entry.master_key") from None

    def decrypt(self, token: str) -> str:
        try:
            return self._cipher.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise ConfigError(
                "a stored partner secret cannot be decrypted: entry.master_key changed without "
                "keeping the old one in entry.previous_master_keys",
                key="entry.master_key",
            ) from None

    def reencrypt(self, token: str) -> str:
        return self._cipher.rotate(token.encode("ascii")).decode("ascii")
