"""The PKCS#11 leg: certificates signed per second by a CA whose key is on SoftHSM2,
beside the same CA shape with its key in software, in the same run.

Both sides go through the gateway's own signing path (``LocalCA.sign`` against
``Pkcs11CA.sign``: the same builder, the same profile and CSR) so the ratio is the
cost of the token: a PKCS#11 round trip per signature, the stand-in key's throwaway
signature, and the verification of the token's signature. The raw token rate
(``C_Sign`` alone, no certificate) is measured too, to show where the time goes.
Concurrency 1 and 4 (the token session is serialised by a lock, so 4 shows the queue).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
ALGORITHMS = ("EC-P256", "RSA-2048")


def _module() -> str | None:
    return next((m for m in MODULES if Path(m).is_file()), None)


async def _rate(sign: Any, request: Any, seconds: float, concurrency: int) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await sign(request)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def _measure(workdir: Path, seconds: float) -> dict[str, Any]:
    from gateway import bootstrap
    from gateway.ca.backend import SignRequest
    from gateway.ca.pkcs11 import Pkcs11Key, Pkcs11Location
    from gateway.config import load_config
    from gateway.runtime import Gateway

    data_dir = workdir / "data"
    await bootstrap.initialize(data_dir)
    gw = await Gateway.open(load_config(data_dir))
    module = _module()
    assert module is not None
    rows: dict[str, Any] = {}
    try:
        profile = gw.profiles["tls-server"]
        device = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.example")]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName("bench.example")]), critical=False)
               .sign(device, hashes.SHA256()))
        request = SignRequest(profile=profile, public_key=device.public_key(), csr=csr)
        h = gw.cas.hierarchy
        for algorithm in ALGORITHMS:
            tag = algorithm.lower().replace("-", "")
            await h.create_root(f"sw-{tag}", f"Software {algorithm}", algorithm)
            location = Pkcs11Location(module=module, key_label=f"hsm-{tag}", token_label="bench",
                                      pin_source="env:GATEWAY_PKCS11_PIN")
            await h.create_root(f"hsm-{tag}", f"Token {algorithm}", algorithm, token=location)
            await gw.cas.load()
            software, token = await gw.cas.backend(f"sw-{tag}"), await gw.cas.backend(f"hsm-{tag}")
            key = token.private_key  # type: ignore[attr-defined]
            assert isinstance(key, Pkcs11Key)
            digest = hashes.SHA256()
            raw_n, raw_start = 0, time.perf_counter()
            while time.perf_counter() - raw_start < seconds:
                key.sign(b"x" * 900, digest)
                raw_n += 1
            row: dict[str, Any] = {"token_c_sign_per_s": raw_n / (time.perf_counter() - raw_start)}
            for concurrency in (1, 4):
                sw = await _rate(software.sign, request, seconds, concurrency)
                hsm = await _rate(token.sign, request, seconds, concurrency)
                row[f"c{concurrency}"] = {"software_certs_per_s": sw, "softhsm2_certs_per_s": hsm,
                                          "ratio": hsm / sw if sw else None}
            rows[algorithm] = row
    finally:
        await gw.close()
    return rows


def run_hsm(seconds: float, workdir: Path) -> dict[str, Any]:
    """The leg in this process (SoftHSM2 reads SOFTHSM2_CONF when first loaded)."""
    module = _module()
    if module is None or shutil.which("softhsm2-util") is None:
        return {"status": "unavailable", "reason": "SoftHSM2 is not installed (Debian package softhsm2)"}
    workdir.mkdir(parents=True, exist_ok=True)
    tokens = Path(tempfile.mkdtemp(prefix="tokens-", dir=workdir))
    conf = workdir / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    pin = secrets.token_hex(6)
    os.environ.update(SOFTHSM2_CONF=str(conf), GATEWAY_PKCS11_PIN=pin)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", pin,
                    "--so-pin", secrets.token_hex(6)], check=True, capture_output=True)
    version = subprocess.run(["softhsm2-util", "--version"], capture_output=True, text=True).stdout.strip()
    return {"status": "ok", "softhsm2": version, "seconds_per_point": seconds,
            "algorithms": asyncio.run(_measure(workdir, seconds))}


def render(leg: dict[str, Any]) -> list[str]:
    if leg.get("status") != "ok":
        return [f"\nPKCS#11 (SoftHSM2): unavailable: {leg.get('reason')}"]
    out = [f"\nPKCS#11 CA key (SoftHSM2 {leg['softhsm2']}) vs software key, certificates signed per second "
           "through the CA backend (same builder, profile, CSR)"]
    for algorithm, row in leg["algorithms"].items():
        cells = "; ".join(f"c{c}: software {row[f'c{c}']['software_certs_per_s']:.0f}/s, SoftHSM2 "
                          f"{row[f'c{c}']['softhsm2_certs_per_s']:.0f}/s (x{row[f'c{c}']['ratio']:.2f})"
                          for c in (1, 4))
        out.append(f"  {algorithm}: {cells}; raw C_Sign {row['token_c_sign_per_s']:.0f}/s")
    return out
