"""The pkcsPKIEnvelope: CMS EnvelopedData (and AuthEnvelopedData for AES-GCM) with RSA
key transport, opened with the RA key and built back to the requester.

Content ciphers the field uses: DES-CBC and 3DES-CBC (old Cisco, macOS, Windows), AES-CBC
(RFC 8894's baseline) and AES-GCM in AuthEnvelopedData (RFC 5083/5084). Key transport:
rsaEncryption (PKCS#1 v1.5) and RSAES-OAEP with its hash, MGF and label parameters.
``cryptography``'s PKCS#7 helpers cover neither DES nor OAEP parameters, so the CMS
structures are asn1crypto and the primitives ``cryptography``.

Every way an envelope can fail to open (not addressed to us, wrong key, bad padding,
bad tag) is reported as the same ``badMessageCheck``: distinguishable failures would
turn PKCS#1 v1.5 into a decryption oracle.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import algos, cms, core
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .ber import normalize_envelope
from .cms import hash_for, issuer_and_serial, load_content_info, matches_identifier
from .types import FailInfo, MalformedMessage, ScepFailure

CBC_CIPHERS: dict[str, int] = {  # asn1crypto name -> key bytes
    "des": 8,
    "tripledes_3key": 24,
    "aes128_cbc": 16,
    "aes192_cbc": 24,
    "aes256_cbc": 32,
}
GCM_CIPHERS: dict[str, int] = {"aes128_gcm": 16, "aes192_gcm": 24, "aes256_gcm": 32}

CIPHER_NAMES: dict[str, str] = {
    "des": "des-cbc",
    "tripledes_3key": "des-ede3-cbc",
    "aes128_cbc": "aes-128-cbc",
    "aes192_cbc": "aes-192-cbc",
    "aes256_cbc": "aes-256-cbc",
    "aes128_gcm": "aes-128-gcm",
    "aes192_gcm": "aes-192-gcm",
    "aes256_gcm": "aes-256-gcm",
}
"""Operator-facing names (settings ``content_encryption``) for the asn1crypto names."""
ALL_CIPHERS: tuple[str, ...] = tuple(CIPHER_NAMES.values())


class GcmParameters(core.Sequence):
    """RFC 5084 GCMParameters (asn1crypto leaves them undeclared)."""

    _fields = [
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


@dataclass(frozen=True)
class Recipient:
    """One RA decryption identity: certificate and RSA private key."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey


@dataclass(frozen=True)
class EnvelopeAlgorithms:
    """What the client used, so the response can use the same (RFC 8894 section 3.3.2)."""

    content: str  # asn1crypto name, e.g. "tripledes_3key"
    key_transport: algos.KeyEncryptionAlgorithm

    @property
    def content_name(self) -> str:
        return CIPHER_NAMES[self.content]

    @property
    def key_transport_name(self) -> str:
        return str(self.key_transport["algorithm"].native)


@dataclass(frozen=True)
class OpenedEnvelope:
    plaintext: bytes
    algorithms: EnvelopeAlgorithms
    recipient: Recipient


def _unwrap_failed() -> ScepFailure:
    return ScepFailure(FailInfo.BAD_MESSAGE_CHECK, "the pkcsPKIEnvelope cannot be decrypted by this RA")


def _oaep(params: algos.RSAESOAEPParams) -> padding.OAEP:
    mgf = params["mask_gen_algorithm"]
    if mgf["algorithm"].native != "mgf1":
        raise ScepFailure(FailInfo.BAD_ALG, "RSAES-OAEP with a mask generation function other than MGF1")
    label = params["p_source_algorithm"]["parameters"].native or None
    return padding.OAEP(
        mgf=padding.MGF1(hash_for(mgf["parameters"]["algorithm"].native)),
        algorithm=hash_for(params["hash_algorithm"]["algorithm"].native),
        label=label,
    )


def _transport_padding(alg: algos.KeyEncryptionAlgorithm) -> padding.AsymmetricPadding:
    name = alg["algorithm"].native
    if name == "rsaes_pkcs1v15":
        return padding.PKCS1v15()
    if name == "rsaes_oaep":
        return _oaep(alg["parameters"])
    raise ScepFailure(FailInfo.BAD_ALG, f"key transport algorithm {name} is not supported")


def _check_cipher(name: str, allowed: Sequence[str]) -> None:
    if name not in CBC_CIPHERS and name not in GCM_CIPHERS:
        raise ScepFailure(FailInfo.BAD_ALG, f"content encryption {name} is not supported")
    if CIPHER_NAMES[name] not in allowed:
        raise ScepFailure(FailInfo.BAD_ALG, f"content encryption {CIPHER_NAMES[name]} is not allowed here")


def _block_cipher(name: str, key: bytes) -> algorithms.BlockCipherAlgorithm:
    if name == "des":
        return TripleDES(key * 3)  # single DES is 3DES with K1 = K2 = K3
    if name == "tripledes_3key":
        return TripleDES(key)
    return algorithms.AES(key)


def _cbc_decrypt(name: str, key: bytes, iv: bytes, data: bytes) -> bytes:
    cipher = _block_cipher(name, key)
    if len(iv) * 8 != cipher.block_size:
        raise _unwrap_failed()
    decryptor = Cipher(cipher, modes.CBC(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(cipher.block_size).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def _cbc_encrypt(name: str, key: bytes, iv: bytes, data: bytes) -> bytes:
    cipher = _block_cipher(name, key)
    padder = sym_padding.PKCS7(cipher.block_size).padder()
    encryptor = Cipher(cipher, modes.CBC(iv)).encryptor()
    return encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()


def _encrypted_bytes(eci: cms.EncryptedContentInfo) -> bytes:
    content = eci["encrypted_content"]
    if content.native is None:
        raise MalformedMessage("the pkcsPKIEnvelope has no encrypted content")
    return bytes(content.native)  # BER constructed OCTET STRINGs are joined by asn1crypto


def _recipient_infos(infos: cms.RecipientInfos) -> list[cms.KeyTransRecipientInfo]:
    out = [info.chosen for info in infos if info.name == "ktri"]
    if not out:
        raise ScepFailure(FailInfo.BAD_ALG, "only RSA key transport recipients are supported")
    return out


def _content_key(
    ktris: list[cms.KeyTransRecipientInfo], recipients: Sequence[Recipient]
) -> tuple[bytes, Recipient, algos.KeyEncryptionAlgorithm]:
    """Unwrap the content-encryption key with the RA key the envelope is addressed to."""
    for ktri in ktris:
        for recipient in recipients:
            if not matches_identifier(recipient.certificate, ktri["rid"]):
                continue
            alg = ktri["key_encryption_algorithm"]
            pad = _transport_padding(alg)
            try:
                return recipient.key.decrypt(ktri["encrypted_key"].native, pad), recipient, alg
            except ValueError:
                raise _unwrap_failed() from None
    raise _unwrap_failed()


def open_envelope(
    data: bytes, recipients: Sequence[Recipient], allowed_ciphers: Sequence[str] = ALL_CIPHERS
) -> OpenedEnvelope:
    """Decrypt a pkcsPKIEnvelope addressed to one of ``recipients``."""
    info = load_content_info(normalize_envelope(data), "pkcsPKIEnvelope")
    kind = info["content_type"].native
    if kind == "enveloped_data":
        env = info["content"]
        eci = env["encrypted_content_info"]
    elif kind == "authenticated_enveloped_data":
        env = info["content"]
        eci = env["auth_encrypted_content_info"]
    else:
        raise MalformedMessage("the pkiMessage content is not an EnvelopedData")
    cipher_alg = eci["content_encryption_algorithm"]
    name = cipher_alg["algorithm"].native
    _check_cipher(name, allowed_ciphers)
    if kind == "enveloped_data" and name in GCM_CIPHERS:
        raise ScepFailure(FailInfo.BAD_ALG, "AES-GCM needs an AuthEnvelopedData (RFC 5083)")
    if kind == "authenticated_enveloped_data" and name not in GCM_CIPHERS:
        raise ScepFailure(FailInfo.BAD_ALG, "AuthEnvelopedData is only supported with AES-GCM")
    key, recipient, transport = _content_key(_recipient_infos(env["recipient_infos"]), recipients)
    ciphertext = _encrypted_bytes(eci)
    try:
        if name in GCM_CIPHERS:
            if len(key) != GCM_CIPHERS[name]:
                raise _unwrap_failed()
            params = GcmParameters.load(cipher_alg["parameters"].dump())
            aad = b""
            if env["auth_attrs"].native is not None:
                contents = env["auth_attrs"].contents
                aad = b"\x31" + _length(len(contents)) + contents
            tag = env["mac"].native
            if len(tag) != params["aes_icvlen"].native:
                raise _unwrap_failed()
            plaintext = AESGCM(key).decrypt(params["aes_nonce"].native, ciphertext + tag, aad or None)
        else:
            if len(key) != CBC_CIPHERS[name]:
                raise _unwrap_failed()
            plaintext = _cbc_decrypt(name, key, cipher_alg["parameters"].native, ciphertext)
    except ScepFailure:
        raise
    except Exception:  # bad padding, bad tag, wrong IV length: all look the same to the client
        raise _unwrap_failed() from None
    return OpenedEnvelope(plaintext, EnvelopeAlgorithms(name, transport), recipient)


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _wrap_key(recipient: x509.Certificate, key: bytes, transport: algos.KeyEncryptionAlgorithm) -> bytes:
    public = recipient.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise ScepFailure(FailInfo.BAD_ALG, "the response can only be encrypted to an RSA certificate")
    return public.encrypt(key, _transport_padding(transport))


def seal_envelope(plaintext: bytes, recipient: x509.Certificate, algorithms_used: EnvelopeAlgorithms) -> bytes:
    """Encrypt ``plaintext`` to ``recipient`` with the algorithms the client used."""
    name = algorithms_used.content
    ktri = cms.KeyTransRecipientInfo({
        "version": "v0",
        "rid": cms.RecipientIdentifier({"issuer_and_serial_number": issuer_and_serial(recipient)}),
        "key_encryption_algorithm": algorithms_used.key_transport,
        "encrypted_key": b"",
    })
    if name in GCM_CIPHERS:
        key = AESGCM.generate_key(GCM_CIPHERS[name] * 8)
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, plaintext, None)
        ciphertext, tag = sealed[:-16], sealed[-16:]
        ktri["encrypted_key"] = _wrap_key(recipient, key, algorithms_used.key_transport)
        params = GcmParameters({"aes_nonce": nonce, "aes_icvlen": 16})
        env = cms.AuthEnvelopedData({
            "version": "v0",
            "recipient_infos": [cms.RecipientInfo({"ktri": ktri})],
            "auth_encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": {"algorithm": name, "parameters": params},
                "encrypted_content": ciphertext,
            },
            "mac": tag,
        })
        return cms.ContentInfo({"content_type": "authenticated_enveloped_data", "content": env}).dump()
    key = os.urandom(CBC_CIPHERS[name])
    iv = os.urandom(8 if name in ("des", "tripledes_3key") else 16)
    ktri["encrypted_key"] = _wrap_key(recipient, key, algorithms_used.key_transport)
    env = cms.EnvelopedData({
        "version": "v0",
        "recipient_infos": [cms.RecipientInfo({"ktri": ktri})],
        "encrypted_content_info": {
            "content_type": "data",
            "content_encryption_algorithm": {"algorithm": name, "parameters": iv},
            "encrypted_content": _cbc_encrypt(name, key, iv, plaintext),
        },
    })
    return cms.ContentInfo({"content_type": "enveloped_data", "content": env}).dump()


def transport_algorithm(name: str, oaep_hash: str = "sha256") -> algos.KeyEncryptionAlgorithm:
    """A key-transport AlgorithmIdentifier by operator name (clients in tests use this)."""
    if name == "rsaes_pkcs1v15":
        return algos.KeyEncryptionAlgorithm({"algorithm": "rsaes_pkcs1v15"})
    if name == "rsaes_oaep":
        return algos.KeyEncryptionAlgorithm({
            "algorithm": "rsaes_oaep",
            "parameters": algos.RSAESOAEPParams({
                "hash_algorithm": {"algorithm": oaep_hash},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": oaep_hash}},
            }),
        })
    raise ValueError(f"unknown key transport {name!r}")


def cipher_by_name(operator_name: str) -> str:
    """asn1crypto name for an operator cipher name (``aes-256-cbc`` -> ``aes256_cbc``)."""
    for asn1_name, op_name in CIPHER_NAMES.items():
        if op_name == operator_name:
            return asn1_name
    raise ValueError(f"unknown content cipher {operator_name!r}; use one of {list(ALL_CIPHERS)}")

