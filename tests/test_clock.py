"""The core runs on an injected clock: time moves in tests without sleeping."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway import bootstrap
from gateway.ca.backend import RevocationReason
from gateway.clock import FakeClock
from gateway.config import load_config
from gateway.runtime import Gateway

from .support import make_csr


async def test_revocation_times_and_crl_schedule_follow_the_injected_clock(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await bootstrap.initialize(data_dir)
    start = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=40)).replace(microsecond=0)
    clock = FakeClock(start)
    gw = await Gateway.open(load_config(data_dir), clock=clock)
    try:
        issued = await gw.authority.issue_direct(
            "issuing", make_csr("clock.example.test", ("clock.example.test",))[0], "tls-server", actor="test")
        status = await gw.authority.revoke(format(issued.serial, "x"), RevocationReason.superseded, actor="test")
        assert status.revoked_at == start

        crl = x509.load_der_x509_crl(await gw.authority.crl("issuing"))
        assert crl.last_update_utc == start  # reissued by the revocation, at the clock's time
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        assert crl.get_revoked_certificate_by_serial_number(issued.serial) is not None

        clock.advance(dt.timedelta(days=1))  # inside the CRL's validity, before its overlap: kept
        assert await gw.authority.crl("issuing") == crl.public_bytes(serialization.Encoding.DER)

        clock.advance(gw.config.duration("crl_validity"))  # past nextUpdate: due, reissued
        fresh = x509.load_der_x509_crl(await gw.authority.crl("issuing"))
        assert fresh.last_update_utc == clock()
        assert fresh.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number + 1
    finally:
        await gw.close()
