"""CRLs issued by two replicas at once (issue 17): two Gateways, each on its own engine of one
database (SQLite file or PostgreSQL schema), so the only thing between them is the database.

Each revocation reissues the CRL, and both replicas also force CRLs meanwhile. Every CRL
number is used once, a higher-numbered CRL holds every revocation a lower one holds, and
the stored CRL's number never goes down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from gateway.ca.backend import RevocationReason
from gateway.config import Config
from gateway.runtime import Gateway
from gateway.store.records import serial_hex

from .conftest import StoreFactory
from .support import make_csr
from .test_local_ca import STRICT_PROFILE, enroll

REVOCATIONS = 16
FORCED_PER_REPLICA = 12


def _number(der: bytes) -> int:
    crl = x509.load_der_x509_crl(der)
    return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)


def _revoked(der: bytes) -> frozenset[int]:
    return frozenset(r.serial_number for r in x509.load_der_x509_crl(der))


@pytest.fixture
async def replicas(store_factory: StoreFactory, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Gateway, Gateway]]:
    monkeypatch.setenv("GATEWAY_CA_PASSPHRASE", "correct horse battery staple")
    cfg = Config(data_dir=tmp_path / "data")
    cfg.profiles_dir.mkdir(parents=True)
    (cfg.profiles_dir / "strict.toml").write_text(STRICT_PROFILE)
    first = await Gateway.open(cfg, store=await store_factory())
    await first.cas.hierarchy.create_root("root", "Test Root CA", "EC-P384")
    await first.cas.load()
    await first.cas.hierarchy.create_intermediate(await first.cas.local("root"), "issuing", "Test Issuing CA", "EC-P256")
    await first.cas.load()
    await first.authority.create_config("dev", "est", "issuing", ["device"])
    second = await Gateway.open(cfg, store=await store_factory())  # its own engine, same database
    try:
        yield first, second
    finally:
        await second.close()
        await first.close()


async def test_crls_from_two_replicas_are_numbered_once_and_never_lose_a_revocation(
    replicas: tuple[Gateway, Gateway],
) -> None:
    first, second = replicas
    serials = [serial_hex((await enroll(first, make_csr()[0], profile="device")).serial)
               for _ in range(REVOCATIONS)]
    issued: list[bytes] = []
    stored_numbers: list[int] = []
    done = asyncio.Event()

    async def revoke(i: int) -> None:
        gw = (first, second)[i % 2]
        await gw.authority.revoke(serials[i], RevocationReason.key_compromise, actor="t")

    async def force(gw: Gateway) -> None:
        for _ in range(FORCED_PER_REPLICA):
            issued.append(await gw.authority.crl("issuing", force=True))

    async def watch() -> None:  # what a CRL GET would serve, as often as it can look
        while not done.is_set():
            async with first.store.read() as q:
                record = await q.cas.get("issuing")
            if record is not None and record.crl_der is not None:
                stored_numbers.append(_number(record.crl_der))
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(revoke(i) for i in range(REVOCATIONS)), force(first), force(second))
    done.set()
    await watcher
    async with second.store.read() as q:
        final = await q.cas.get("issuing")
    assert final is not None and final.crl_der is not None
    issued.append(final.crl_der)

    by_number: dict[int, frozenset[int]] = {}
    for der in issued:
        number, revoked = _number(der), _revoked(der)
        assert by_number.setdefault(number, revoked) == revoked, f"two different CRLs numbered {number}"
    numbers = sorted(by_number)
    assert len(issued) - 1 == len({_number(d) for d in issued[:-1]}), "a forced CRL's number used twice"
    for lower, higher in zip(numbers, numbers[1:]):
        lost = by_number[lower] - by_number[higher]
        assert not lost, f"CRL {higher} lacks {len(lost)} revocation(s) CRL {lower} has"
    assert by_number[numbers[-1]] == {int(s, 16) for s in serials}
    assert _number(final.crl_der) == final.crl_number  # the stored CRL is the newest number
    assert stored_numbers == sorted(stored_numbers), "the stored CRL went back to a lower number"
