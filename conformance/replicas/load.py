"""Mixed ACME + SCEP + EST load that keeps going through replica deaths, and records
every answer that was not a certificate.

Each client retries what a real client retries: a dropped or refused connection, a
``503`` with ``Retry-After`` (ACME ``serverInternal``, EST, SCEP), a SCEP ``PENDING``
(a SCEP client resends the same PKCSReq: same transactionID, which the gateway answers
with the certificate it already issued, if it did), an ACME ``badNonce`` (resent with
the fresh nonce, RFC 8555 6.5; counted). Anything else is a violation, and so are a 503
without ``Retry-After`` and a client that ran out of tries: the suite asserts there are
none. Every certificate received is kept for the store checks.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import ssl
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from bench.acme_client import AcmeError, AcmeWorker, make_csr
from bench.scep_load import get_ca_certs
from bench.scep_message import ScepCheckFailed, check_cert_rep, make_device, pkcs_req, recipient

TRANSPORT = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError, ConnectionError)
"""A connection refused, reset or cut mid-answer (the replica died): retried."""

MAX_TRIES = 40


@dataclass
class Outcomes:
    received: list[tuple[str, x509.Certificate]] = field(default_factory=list)
    retried: collections.Counter[str] = field(default_factory=collections.Counter)
    violations: list[str] = field(default_factory=list)

    def got(self, client: str, cert: x509.Certificate) -> None:
        self.received.append((client, cert))


def _retry_after_ok(value: str | None) -> bool:
    """A 503's Retry-After as RFC 9110 10.2.3 has it here: whole seconds, more than zero."""
    return value is not None and value.strip().isdigit() and int(value) > 0


def _pause(tries: int) -> float:
    return min(0.2 * (tries + 1), 2.0)


async def acme_loop(directory: str, ctx: ssl.SSLContext, name: str, stop: asyncio.Event, out: Outcomes) -> None:
    worker: AcmeWorker | None = None
    index = 0
    tries = 0
    while not stop.is_set() and tries < MAX_TRIES:
        try:
            if worker is None:
                worker = AcmeWorker(directory, ctx, name)
                await worker.setup()
            issued = await worker.issue(index)
            out.got("acme", x509.load_pem_x509_certificates(issued.chain_pem)[0])
            index += 1
            tries = 0
            continue
        except TRANSPORT as exc:
            out.retried[f"acme transport {type(exc).__name__}"] += 1
        except AcmeError as exc:
            if exc.status == 503 and exc.type.endswith(":serverInternal"):
                if worker is None or not _retry_after_ok(worker.retry_after):
                    out.violations.append(f"acme: 503 without a Retry-After: {exc}")
                out.retried["acme 503 serverInternal"] += 1
            elif exc.status == 400 and exc.type.endswith(":badNonce"):  # four in a row across deaths
                out.retried["acme badNonce"] += 1
            else:
                out.violations.append(f"acme: {exc}")
        tries += 1
        if worker is not None:
            out.retried["acme badNonce resent"] += worker.bad_nonces
            await worker.close()
            worker = None  # a new session (and account) after any failure: no half state kept
        await asyncio.sleep(_pause(tries))
    if worker is not None:
        out.retried["acme badNonce resent"] += worker.bad_nonces
        await worker.close()
    if tries >= MAX_TRIES:
        out.violations.append(f"acme {name}: gave up after {MAX_TRIES} failed tries in a row")


async def _post_until_answered(session: aiohttp.ClientSession, protocol: str, url: str, body: bytes,
                               headers: dict[str, str], out: Outcomes, tries: int) -> bytes | None:
    """POST ``body``, retrying a cut connection and a 503 with Retry-After as a client does;
    the 200 body, or None once the answer was a violation or ``tries`` ran out (both
    recorded as violations)."""
    for attempt in range(tries):
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                answer, status, retry_after = await resp.read(), resp.status, resp.headers.get("Retry-After")
        except TRANSPORT as exc:
            out.retried[f"{protocol} transport {type(exc).__name__}"] += 1
        else:
            if status == 200:
                return answer
            if status != 503 or not _retry_after_ok(retry_after):
                out.violations.append(f"{protocol}: HTTP {status} (Retry-After {retry_after!r}) {answer[:200]!r}")
                return None
            out.retried[f"{protocol} 503"] += 1
        await asyncio.sleep(_pause(attempt))
    out.violations.append(f"{protocol}: no answer but transport errors and 503s after {tries} tries")
    return None


async def scep_loop(url: str, challenge: str, name: str, stop: asyncio.Event, out: Outcomes) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    known: list[x509.Certificate] = []
    index = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        while not stop.is_set():
            try:
                known = known or await get_ca_certs(url)
            except TRANSPORT:
                await asyncio.sleep(0.3)
                continue
            except Exception as exc:  # GetCACert must answer while any replica lives
                out.retried[f"scep GetCACert {type(exc).__name__}"] += 1
                await asyncio.sleep(0.3)
                continue
            request = pkcs_req(make_device(f"{name}-{index}", key), f"{name}-{index}", challenge, recipient(known))
            for tries in range(MAX_TRIES):  # the same PKCSReq resent, as SCEP clients do (PENDING too)
                body = await _post_until_answered(session, "scep", f"{url}?operation=PKIOperation", request.body,
                                                  {"Content-Type": "application/x-pki-message"}, out,
                                                  MAX_TRIES - tries)
                if body is None:
                    break
                try:
                    out.got("scep", check_cert_rep(request, body, known))
                except ScepCheckFailed as exc:
                    if "pkiStatus 3" in str(exc) or "PENDING" in str(exc):
                        out.retried["scep PENDING"] += 1
                        await asyncio.sleep(_pause(tries))
                        continue
                    out.violations.append(f"scep: {exc}")
                break
            else:
                out.violations.append(f"scep {name}-{index}: still PENDING after {MAX_TRIES} tries")
            index += 1


async def est_loop(url: str, ctx: ssl.SSLContext, user: str, password: str, name: str,
                   stop: asyncio.Event, out: Outcomes) -> None:
    index = 0
    headers = {"Content-Type": "application/pkcs10",
               "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30),
                                     connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        while not stop.is_set():
            csr, _ = make_csr(f"{name}-{index}.est.example.test")
            answer = await _post_until_answered(session, "est", f"{url}/simpleenroll", base64.b64encode(csr),
                                                headers, out, MAX_TRIES)
            if answer is not None:
                out.got("est", pkcs7.load_der_pkcs7_certificates(base64.b64decode(answer))[0])
            index += 1


async def run_load(info: Any, acme_directory: str, stop: asyncio.Event, out: Outcomes) -> None:
    """Two clients of each protocol until ``stop``."""
    ctx = ssl.create_default_context(cafile=info.tls_ca)
    scep = next(e for e in info.data["protocols"]["scep"] if e["config"] == "scep")
    est = next(e for e in info.data["protocols"]["est"] if e["config"] == "est")
    await asyncio.gather(
        *(acme_loop(acme_directory, ctx, f"chaos-acme-{i}", stop, out) for i in range(2)),
        *(scep_loop(scep["url"], scep["challenge"], f"chaos-scep-{i}", stop, out) for i in range(2)),
        *(est_loop(est["url"], ctx, est["username"], est["password"], f"chaos-est-{i}", stop, out)
          for i in range(2)),
    )
