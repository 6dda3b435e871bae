"""Exchange keys at rest: AES-256-GCM, with the key derived from the operator's master PIN by scrypt.

Two scrypt derivations from one salt: a *verifier*, stored, to check a PIN; and the *encryption key*, never
stored, derived again each time a key is needed (just in time) and dropped after. Without the PIN the stored
ciphertext and verifier reveal nothing usable; a wrong PIN is refused before any decryption is attempted.
The associated data binds a ciphertext to its key id, so rows cannot be swapped."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

WEAK_PINS = frozenset({"000000", "111111", "123456", "654321", "123123", "112233", "121212", "password"})
PLACEHOLDER_PINS = frozenset({"pin", "mypin", "yourpin", "masterpin", "changeme", "placeholder", "xxxxxx", "secret"})


class PinRefused(ValueError):
    """The PIN is too weak to protect exchange keys."""


@dataclass(frozen=True)
class PinRecord:
    salt: bytes
    verifier: bytes
    n: int = 2**15
    r: int = 8
    p: int = 1

    def _derive(self, pin: str, purpose: bytes) -> bytes:
        return hashlib.scrypt(pin.encode(), salt=self.salt + purpose, n=self.n, r=self.r, p=self.p,
                              maxmem=256 * 1024 * 1024, dklen=32)

    def check(self, pin: str) -> bool:
        return hmac.compare_digest(self._derive(pin, b":verify"), self.verifier)

    def key(self, pin: str) -> bytes:
        """The AES-256 key; call only after ``check``."""
        return self._derive(pin, b":encrypt")


def _placeholder(pin: str) -> bool:
    """Text copied from an example (``<your PIN>``) rather than a PIN someone chose."""
    plain = "".join(c for c in pin.lower() if c.isalnum())
    return "<" in pin or ">" in pin or plain in PLACEHOLDER_PINS or plain.startswith(("your", "enter"))


def validate_pin(pin: str) -> None:
    if _placeholder(pin):
        raise PinRefused("the master PIN looks like a placeholder copied from an example (angle brackets, 'your PIN'): "
                         "choose your own PIN, at least 6 characters, at least 3 different")
    if len(pin) < 6 or pin in WEAK_PINS or len(set(pin)) < 3:
        raise PinRefused("the master PIN needs at least 6 characters, at least 3 different, and not a common one")


def new_pin_record(pin: str, *, n: int = 2**15) -> PinRecord:
    validate_pin(pin)
    salt = os.urandom(16)
    record = PinRecord(salt, b"", n)
    return PinRecord(salt, record._derive(pin, b":verify"), n)


@dataclass(frozen=True)
class Credentials:
    api_key: str
    secret: str

    def __repr__(self) -> str:  # never in a log line or a traceback
        return f"Credentials(api_key=…{self.api_key[-4:]}, secret=***)"


def seal(key: bytes, key_id: str, creds: Credentials) -> tuple[bytes, bytes]:
    nonce = os.urandom(12)
    plaintext = json.dumps({"api_key": creds.api_key, "secret": creds.secret}).encode()
    return nonce, AESGCM(key).encrypt(nonce, plaintext, key_id.encode())


def unseal(key: bytes, key_id: str, nonce: bytes, ciphertext: bytes) -> Credentials:
    data = json.loads(AESGCM(key).decrypt(nonce, ciphertext, key_id.encode()))
    return Credentials(data["api_key"], data["secret"])
