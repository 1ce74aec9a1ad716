"""The crypto ceiling: how many enrollments per second this machine could complete if
it did nothing but the public- and private-key operations one enrollment needs.

ACME, per certificate: one signature verification per JWS the client sends (ES256,
the count comes from the client's measured flow), the CSR's signature check and the
certificate's signature with the CA's key type.
SCEP, per certificate: the envelope's key transport decryption (RA key), the
SignedData and CSR signature checks (device key), the certificate signature (CA key),
the response's key transport encryption to the device and its signature (RA key).

Measured twice in the same run as the benchmarks: on one core, and on every core at
once (one process per CPU), since a server may use all of them. Symmetric ciphers,
hashing of small inputs and ASN.1 work are left out on purpose: the ceiling is the
cost nobody can optimise away.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

_DATA = os.urandom(900)  # about a TBSCertificate / a JWS signing input


def _key(name: str) -> Any:
    if name.startswith("RSA-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(name[4:]))
    curve = {"EC-P256": ec.SECP256R1(), "EC-P384": ec.SECP384R1(), "EC-P521": ec.SECP521R1()}[name]
    return ec.generate_private_key(curve)


def _hash_for(name: str) -> hashes.HashAlgorithm:
    return {"EC-P384": hashes.SHA384(), "EC-P521": hashes.SHA512()}.get(name, hashes.SHA256())


def _signer(name: str) -> Callable[[], object]:
    key = _key(name)
    if isinstance(key, rsa.RSAPrivateKey):
        return lambda: key.sign(_DATA, padding.PKCS1v15(), hashes.SHA256())
    h = _hash_for(name)
    return lambda: key.sign(_DATA, ec.ECDSA(h))


def _verifier(name: str) -> Callable[[], object]:
    key = _key(name)
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(_DATA, padding.PKCS1v15(), hashes.SHA256())
        pub = key.public_key()
        return lambda: pub.verify(sig, _DATA, padding.PKCS1v15(), hashes.SHA256())
    h = _hash_for(name)
    sig = key.sign(_DATA, ec.ECDSA(h))
    pub_ec = key.public_key()
    return lambda: pub_ec.verify(sig, _DATA, ec.ECDSA(h))


def _decrypter(name: str) -> Callable[[], object]:
    key = _key(name)
    assert isinstance(key, rsa.RSAPrivateKey), "key transport needs an RSA key"
    blob = key.public_key().encrypt(os.urandom(16), padding.PKCS1v15())
    return lambda: key.decrypt(blob, padding.PKCS1v15())


def _encrypter(name: str) -> Callable[[], object]:
    pub = _key(name).public_key()
    return lambda: pub.encrypt(os.urandom(16), padding.PKCS1v15())


Operation = tuple[str, str, str, int]
"""(purpose, operation, key type, times per enrollment)."""


def acme_operations(jws_count: int, ca_key: str, account_key: str = "EC-P256",
                    csr_key: str = "EC-P256") -> list[Operation]:
    return [
        ("JWS signatures", "verify", account_key, jws_count),
        ("CSR signature", "verify", csr_key, 1),
        ("certificate signature", "sign", ca_key, 1),
    ]


def scep_operations(ra_key: str, ca_key: str, device_key: str = "RSA-2048") -> list[Operation]:
    return [
        ("request envelope key transport", "decrypt", ra_key, 1),
        ("SignedData and CSR signatures", "verify", device_key, 2),
        ("certificate signature", "sign", ca_key, 1),
        ("response envelope key transport", "encrypt", device_key, 1),
        ("CertRep signature", "sign", ra_key, 1),
    ]


_MAKERS = {"sign": _signer, "verify": _verifier, "decrypt": _decrypter, "encrypt": _encrypter}


def _enrollment(ops: list[Operation]) -> Callable[[], None]:
    steps = [(_MAKERS[op](key), n) for _, op, key, n in ops]

    def one() -> None:
        for fn, n in steps:
            for _ in range(n):
                fn()
    return one


def _loop(ops: list[Operation], duration: float, start_at: float | None = None) -> tuple[int, float]:
    """Complete enrollments' crypto for ``duration`` seconds (bounded); (count, seconds)."""
    one = _enrollment(ops)
    one()  # warm-up
    if start_at is not None:  # start together with the other processes
        while time.time() < start_at:
            time.sleep(0.001)
    count, t0 = 0, time.perf_counter()
    end = t0 + duration
    while count < 10_000_000:
        one()
        count += 1
        if time.perf_counter() >= end:
            break
    return count, time.perf_counter() - t0


def _per_op(ops: list[Operation], duration: float) -> dict[str, float]:
    out = {}
    for _, op, key, _n in ops:
        fn = _MAKERS[op](key)
        fn()
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < duration and count < 1_000_000:
            fn()
            count += 1
        out[f"{op} {key}"] = round((time.perf_counter() - t0) / count * 1e6, 1)
    return out


@dataclass(frozen=True)
class Ceiling:
    operations: list[Operation]
    microseconds_per_operation: dict[str, float]
    rate_one_core: float
    rate_all_cores: float
    processes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "operations_per_enrollment": [{"purpose": purpose, "operation": op, "key": key, "count": n}
                                          for purpose, op, key, n in self.operations],
            "microseconds_per_operation": self.microseconds_per_operation,
            "rate_one_core": round(self.rate_one_core, 1),
            "rate_all_cores": round(self.rate_all_cores, 1),
            "processes": self.processes,
        }


def measure(ops: list[Operation], duration: float = 1.0) -> Ceiling:
    """One core, then every core in parallel, each for ``duration`` seconds."""
    processes = os.cpu_count() or 1
    count, seconds = _loop(ops, duration)
    one_core = count / seconds
    with ProcessPoolExecutor(max_workers=processes) as pool:
        start_at = time.time() + 1.0 + 0.2 * processes  # key generation happens before this
        results = list(pool.map(_loop, [ops] * processes, [duration] * processes, [start_at] * processes))
    all_cores = sum(c / s for c, s in results)
    return Ceiling(ops, _per_op(ops, min(duration, 0.3)), one_core, all_cores, processes)
