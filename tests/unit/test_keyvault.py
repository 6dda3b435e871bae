"""Exchange keys at rest: sealed with a PIN-derived AES-256-GCM key, bound to their id, never printable."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag
from quorum.keyvault import Credentials, PinRefused, new_pin_record, seal, unseal

FAST = 2**10  # a cheap scrypt cost for tests; production uses 2**15
CREDS = Credentials("AKIA-test-key-7f3a", "s3cr3t-value-never-logged")


def test_the_right_pin_opens_what_it_sealed() -> None:
    record = new_pin_record("correct-horse", n=FAST)
    nonce, ct = seal(record.key("correct-horse"), "key-1", CREDS)

    assert record.check("correct-horse") and not record.check("wrong-horse")
    assert unseal(record.key("correct-horse"), "key-1", nonce, ct) == CREDS
    assert b"s3cr3t" not in ct and b"AKIA" not in ct


def test_a_wrong_pin_or_a_swapped_row_cannot_decrypt() -> None:
    record = new_pin_record("correct-horse", n=FAST)
    nonce, ct = seal(record.key("correct-horse"), "key-1", CREDS)

    with pytest.raises(InvalidTag):
        unseal(record.key("wrong-horse"), "key-1", nonce, ct)
    with pytest.raises(InvalidTag):
        unseal(record.key("correct-horse"), "key-2", nonce, ct)  # ciphertext moved to another key's row


@pytest.mark.parametrize("pin", ["12345", "123456", "000000", "aaaaaaa", "ababab"])
def test_weak_pins_are_refused(pin: str) -> None:
    with pytest.raises(PinRefused):
        new_pin_record(pin, n=FAST)


def test_credentials_never_print_their_secret() -> None:
    assert "s3cr3t" not in repr(CREDS) and "s3cr3t" not in str(CREDS) and repr(CREDS).endswith("secret=***)")
