"""Sealing EAB keys with a key derived from the CA passphrase."""

from __future__ import annotations

import pytest

from protocols.acme.keyring import Keyring, SealError


def test_seal_round_trip_is_bound_to_its_context_and_passphrase() -> None:
    a = Keyring(b"passphrase")
    token = a.seal(b"hmac key bytes", "acme-eab:acme:kid-1")
    assert b"hmac key bytes" not in token.encode() and token.startswith("v1.")
    assert a.unseal(token, "acme-eab:acme:kid-1") == b"hmac key bytes"
    assert Keyring(b"passphrase").unseal(token, "acme-eab:acme:kid-1") == b"hmac key bytes"
    with pytest.raises(SealError):
        a.unseal(token, "acme-eab:acme:kid-2")  # moved to another key id
    with pytest.raises(SealError):
        Keyring(b"another passphrase").unseal(token, "acme-eab:acme:kid-1")
    with pytest.raises(SealError):
        a.unseal(token[:-4] + "AAAA", "acme-eab:acme:kid-1")
    with pytest.raises(SealError):
        a.unseal("v0.abc", "acme-eab:acme:kid-1")
    assert a.seal(b"x", "c") != a.seal(b"x", "c")  # fresh IV each time


def test_eab_hmac_keys_never_start_with_a_dash(monkeypatch) -> None:
    """certbot/lego parse '--eab-hmac-key -cXYZ' as options: such keys must not be handed out."""
    import secrets as secrets_module

    from protocols.acme import eab

    dashed = bytes([0xF8]) + bytes(31)  # base64url starts with '-'
    assert eab.b64url(dashed).startswith("-")
    draws = iter([dashed, dashed, bytes(32)])
    monkeypatch.setattr(secrets_module, "token_bytes", lambda n: next(draws))
    assert not eab.b64url(eab._cli_safe_secret()).startswith("-")
