"""Chain checks on imported CA certificates: a signature that does not verify is a policy refusal.

A look-alike issuer (same name, other key) makes cryptography raise InvalidSignature; that must
reach the operator as PolicyViolation, not as an internal error.
"""

from __future__ import annotations

import datetime as dt

import pytest

from gateway import keys
from gateway.ca.hierarchy import ca_subject, self_signed_root, verify_chain
from gateway.errors import PolicyViolation

VALIDITY = dt.timedelta(days=30)


def test_self_signed_root_verifies_against_itself() -> None:
    root = self_signed_root(keys.generate_private_key("EC-P256"), ca_subject("Chain Root"), VALIDITY)
    verify_chain(root, [root])


def test_look_alike_issuer_is_a_policy_violation() -> None:
    real = self_signed_root(keys.generate_private_key("EC-P256"), ca_subject("Chain Root"), VALIDITY)
    impostor = self_signed_root(keys.generate_private_key("EC-P256"), ca_subject("Chain Root"), VALIDITY)
    with pytest.raises(PolicyViolation, match="is not signed by"):
        verify_chain(real, [impostor])
