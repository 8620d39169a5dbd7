"""PIN hashing with scrypt (RFC 7914, ``hashlib.scrypt``). The stored form carries its parameters
and salt: ``scrypt$N$r$p$salt_hex$hash_hex``; verification is constant-time."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def hash_pin(pin: str, *, n: int = 2**14, r: int = 8, p: int = 1) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=256 * 1024 * 1024)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_hex, digest_hex = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(pin.encode("utf-8"), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r), p=int(p),
                            dklen=len(digest_hex) // 2, maxmem=256 * 1024 * 1024)
    return hmac.compare_digest(digest.hex(), digest_hex)
