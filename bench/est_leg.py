"""The EST leg: /simpleenroll (RFC 7030 4.2.1) against the crypto ceiling only.

No real EST peer runs here: Cisco's libest is neither a Debian package nor on a Python
registry (the PyPI project named ``libest`` is something else), so this leg compares
the gateway's rate with the ceiling of the key operations one enrollment needs (the
CSR's signature check and the certificate's signature), measured in the same run, and
says so. The gateway serves the dev ``est`` label (HTTP Basic, scrypt-hashed password,
EC-P256 issuing CA) on SQLite; each client keeps its TLS connection alive, as an EST
device renewing in a loop would, and sends a fresh EC-P256 CSR per request, made
before it is timed. Every certificate is checked afterwards: it parses, carries the
CSR's key and name, chains to the issuing CA, and no serial repeats.
"""

from __future__ import annotations

import base64
import logging
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from . import ceiling
from .acme_client import make_csr
from .gateway_setup import Unavailable, initialize
from .loop import Limits, timed_run
from .settings import Mode
from .stats import median, percentile
from .verify import Verdict

log = logging.getLogger("bench")

CONCURRENCIES = (1, 8)


def est_operations(ca_key: str = "EC-P256", csr_key: str = "EC-P256") -> list[ceiling.Operation]:
    return [("CSR signature", "verify", csr_key, 1), ("certificate signature", "sign", ca_key, 1)]


class EstWorker:
    def __init__(self, url: str, ctx: ssl.SSLContext, user: str, password: str, prefix: str) -> None:
        self.url, self.ctx, self.prefix = f"{url}/simpleenroll", ctx, prefix
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.session: aiohttp.ClientSession | None = None

    async def setup(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ctx, limit=1),
                                             timeout=aiohttp.ClientTimeout(total=30))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def issue(self, index: int) -> tuple[bytes, bytes]:
        assert self.session is not None
        csr, public = make_csr(f"{self.prefix}-{index}.est.bench.example")
        body = base64.b64encode(csr)
        async with self.session.post(self.url, data=body,
                                     headers={"Content-Type": "application/pkcs10", "Authorization": self.auth}) as resp:
            answer = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {answer[:200]!r}")
        return answer, public


def _verify(artefacts: list[tuple[bytes, bytes]], issuer: x509.Certificate) -> Verdict:
    verdict = Verdict()
    serials: set[int] = set()
    for answer, public in artefacts:
        verdict.checked += 1
        try:
            cert = pkcs7.load_der_pkcs7_certificates(base64.b64decode(answer))[0]
            cert.verify_directly_issued_by(issuer)
            spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
            if spki != public:
                raise ValueError("not the CSR's key")
        except Exception as exc:  # any defect of an answer is a finding
            verdict.invalid += 1
            verdict.reasons[f"{type(exc).__name__}: {exc}"[:120]] += 1
            continue
        if cert.serial_number in serials:
            verdict.duplicate_serial += 1
            continue
        serials.add(cert.serial_number)
        verdict.valid_unique += 1
    return verdict


async def run_est(mode: Mode, workdir: Path) -> dict[str, Any]:
    from conformance.harness import GatewayProcess

    data_dir = workdir / "gateway"
    try:
        await initialize(data_dir)
    except Unavailable as exc:
        return {"status": "unavailable", "reason": str(exc)}
    proc = GatewayProcess(data_dir)
    info = proc.start()
    try:
        est = next(e for e in info.data["protocols"]["est"] if e["config"] == "est")
        ctx = ssl.create_default_context(cafile=info.tls_ca)
        issuer = x509.load_pem_x509_certificate(Path(info.ca("issuing")["certificate"]).read_bytes())
        out: dict[str, Any] = {"peer": "none (no libest here): compared with the crypto ceiling only",
                               "ca_key": "EC-P256", "auth": "HTTP Basic (scrypt)"}
        for c in CONCURRENCIES:
            runs = []
            for rep in range(mode.repetitions.get(c, 1)):
                workers = [EstWorker(est["url"], ctx, est["username"], est["password"], f"c{c}-r{rep}-w{i}")
                           for i in range(c)]
                raw = await timed_run(workers, Limits(duration=mode.window, max_ops=mode.max_ops,
                                                      stall_timeout=mode.stall_timeout),
                                      server_pids=lambda: [proc.proc.pid] if proc.proc is not None else [])
                verdict = _verify(raw.artefacts, issuer)
                ms = sorted(x * 1000 for x in raw.latencies)
                runs.append({
                    "rate": verdict.valid_unique / raw.elapsed if raw.elapsed else 0.0,
                    "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
                    "errors": raw.error_count + verdict.invalid + verdict.duplicate_serial,
                    "problems": [*verdict.reasons, *raw.error_samples[:2]],
                    "server_cpu_ms_per_cert": (1000 * raw.server_cpu / verdict.valid_unique
                                               if raw.server_cpu and verdict.valid_unique else None),
                })
            out[f"c{c}"] = {
                "rate": median(r["rate"] for r in runs), "p50_ms": median(r["p50_ms"] for r in runs),
                "p99_ms": median(r["p99_ms"] for r in runs),
                "server_cpu_ms_per_cert": median(r["server_cpu_ms_per_cert"] for r in runs),
                "errors": sum(r["errors"] for r in runs),
                "problems": [p for r in runs for p in r["problems"]][:5], "runs": len(runs),
            }
    finally:
        proc.stop()
    ops = est_operations()
    out["ceiling"] = ceiling.measure(ops, mode.ceiling_seconds).as_dict()
    best = out["ceiling"]["rate_all_cores"]
    rate8 = out.get("c8", {}).get("rate")
    out["fraction_of_ceiling_c8"] = round(rate8 / best, 4) if rate8 and best else None
    return out


def render(result: dict[str, Any]) -> list[str]:
    if result.get("status") == "unavailable":
        return [f"\nEST: unavailable: {result.get('reason')}"]
    lines = ["\nEST /simpleenroll (HTTP Basic, EC-P256 CA, SQLite); peer: "
             f"{result.get('peer')}", f"  {'':6}{'certs/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/cert':>13}{'errors':>8}"]
    for c in CONCURRENCIES:
        row = result.get(f"c{c}") or {}
        lines.append(f"  c{c:<5}{row.get('rate') or 0:>10.1f}{row.get('p50_ms') or 0:>9.1f}"
                     f"{row.get('p99_ms') or 0:>9.1f}{row.get('server_cpu_ms_per_cert') or 0:>13.1f}"
                     f"{row.get('errors', 0):>8}")
    ceil = result.get("ceiling") or {}
    frac = result.get("fraction_of_ceiling_c8")
    lines.append(f"  crypto ceiling {ceil.get('rate_all_cores', 0):.0f}/s on all cores "
                 f"({ceil.get('rate_one_core', 0):.0f}/s on one); c8 = "
                 f"{'-' if frac is None else f'{frac * 100:.1f}%'} of it")
    return lines
