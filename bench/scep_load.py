"""The SCEP load generator: PKCSReq messages built before the window, posted during it.

Building a request costs the client two RSA-2048 signatures and an encryption; a
Python client doing that inside the timed window would share the two cores with the
server it measures and cap a fast server's rate. So requests are built beforehand on
every core (a process pool), each used once, and the window only posts them.

Device keys: RSA-2048 keys are slow to make (tens of milliseconds each), so a pool of
keys is made once per leg and each request pairs one of them with its own subject,
transactionID and nonce. Every request in flight at one time has a different key.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .scep_message import (
    Device,
    Request,
    ScepCheckFailed,
    check_cert_rep,
    make_device,
    parse_ca_certs,
    pkcs_req,
)
from .verify import Verdict, count_unique, key_name, spki

PKI_MESSAGE = "application/x-pki-message"


class ScepError(Exception):
    """The server did not answer a PKIOperation with a pkiMessage."""


async def get_ca_certs(url: str, ssl_context: Any = None) -> list[x509.Certificate]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.get(url, params={"operation": "GetCACert", "message": "bench"}, ssl=ssl_context) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise ScepError(f"GetCACert: HTTP {resp.status} {body[:200]!r}")
            return parse_ca_certs(body, resp.headers.get("Content-Type", ""))


# --- building requests on every core ------------------------------------------------
_worker_devices: list[Device] = []


def _init_builder(key_pems: list[bytes]) -> None:
    global _worker_devices
    _worker_devices = [make_device(f"bench-device-{i}", serialization.load_pem_private_key(pem, None))  # type: ignore[arg-type]
                       for i, pem in enumerate(key_pems)]


def _build(args: tuple[int, str, str, bytes]) -> tuple[int, str, str, bytes, bytes]:
    key_index, common_name, challenge, to_der = args
    req = pkcs_req(_worker_devices[key_index], common_name, challenge, x509.load_der_x509_certificate(to_der))
    cert_der = req.device.certificate.public_bytes(serialization.Encoding.DER)
    return key_index, req.transaction_id, req.sender_nonce.hex(), req.body, cert_der


def device_keys(count: int) -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(count)]


def build_requests(keys: Sequence[rsa.RSAPrivateKey], count: int, prefix: str, challenge: str,
                   to: x509.Certificate) -> list[Request]:
    """``count`` PKCSReqs for ``to``; request i uses key i mod len(keys)."""
    pems = [k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()) for k in keys]
    to_der = to.public_bytes(serialization.Encoding.DER)
    jobs = [(i % len(keys), f"{prefix}-{i}", challenge, to_der) for i in range(count)]
    devices: dict[tuple[int, bytes], Device] = {}
    out: list[Request] = []
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1, initializer=_init_builder, initargs=(pems,)) as pool:
        for (key_index, common_name, _, _), (_, tid, nonce, body, cert_der) in zip(
                jobs, pool.map(_build, jobs, chunksize=max(1, count // 32))):
            device = devices.get((key_index, cert_der))
            if device is None:
                cert = x509.load_der_x509_certificate(cert_der)
                device = Device(keys[key_index], cert, spki(keys[key_index].public_key()))
                devices[(key_index, cert_der)] = device
            out.append(Request(device, common_name, tid, bytes.fromhex(nonce), body))
    return out


# --- the worker ------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    request: Request
    body: bytes


class ScepWorker:
    """Posts prepared PKCSReqs (POST PKIOperation) from a shared queue."""

    def __init__(self, url: str, queue: collections.deque[Request], ssl_context: Any = None,
                 request_timeout: float = 30.0) -> None:
        self.url = url + "?operation=PKIOperation"
        self.queue = queue
        self.ssl_context = ssl_context
        self.timeout = aiohttp.ClientTimeout(total=request_timeout)
        self.session: aiohttp.ClientSession | None = None

    async def setup(self) -> None:
        connector = aiohttp.TCPConnector(ssl=self.ssl_context if self.ssl_context is not None else False, limit=2)
        self.session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def issue(self, index: int) -> Answer:
        assert self.session is not None
        try:
            request = self.queue.popleft()
        except IndexError:
            raise ScepError("prepared requests exhausted") from None
        async with self.session.post(self.url, data=request.body, headers={"Content-Type": PKI_MESSAGE}) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise ScepError(f"HTTP {resp.status}: {body[:200]!r}")
        return Answer(request, body)


def verify_answers(answers: Sequence[Answer], known: Sequence[x509.Certificate]) -> Verdict:
    """Check every CertRep after the window; count correct, unique-serial certificates."""
    verdict = Verdict()
    good = []
    for answer in answers:
        verdict.checked += 1
        try:
            cert = check_cert_rep(answer.request, answer.body, known)
        except ScepCheckFailed as exc:
            verdict.invalid += 1
            verdict.reasons[str(exc)[:120]] += 1
            continue
        except Exception as exc:  # whatever a broken response trips over, it does not count
            verdict.invalid += 1
            verdict.reasons[f"unreadable CertRep: {type(exc).__name__}"] += 1
            continue
        issuer = next((c for c in known if c.subject == cert.issuer), None)
        if issuer is not None and verdict.ca_key is None:
            verdict.ca_key = key_name(issuer.public_key())
        good.append((cert.issuer.public_bytes(), cert.serial_number))
    return count_unique(verdict, good)
