"""The HTTPS listener serves the same SCEP endpoints (real TLS, in-process gateway made by
``gateway init``): GetCACert, PKIOperation, and mscep_admin, which needs TLS."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from conformance.scep.simulator import ScepTestClient, make_csr, parse_cert_rep
from conformance.scep.support import served
from protocols.scep import cms as scms
from protocols.scep.types import PkiStatus


async def test_enrollment_and_mscep_admin_over_https(tmp_path: Path) -> None:
    async with served(tmp_path) as gateway, aiohttp.ClientSession() as session:
        url = gateway.url(https=True)
        async with session.get(f"{url}?operation=GetCACert", ssl=gateway.ssl()) as resp:
            certs = scms.certificates_of_degenerate(await resp.read())
        ra = next(c for c in certs if "SCEP RA" in c.subject.rfc4514_string())
        auth = {"Authorization": aiohttp.encode_basic_auth(gateway.dev["admin_username"], gateway.dev["admin_password"])}
        async with session.get(f"{gateway.info.https}/certsrv/mscep_admin/", headers=auth, ssl=gateway.ssl()) as resp:
            page = (await resp.read())[2:].decode("utf-16-le")
        found = re.search(r"challenge password is: <B> ([0-9A-F]{16}) </B>", page)
        assert found, page
        device = ScepTestClient(ra)
        body, tid, _ = device.pkcs_req(make_csr(device.key, "over-tls", challenge=found.group(1)))
        async with session.post(f"{url}?operation=PKIOperation", data=body, ssl=gateway.ssl()) as resp:
            rep = parse_cert_rep(await resp.read())
        assert rep.status is PkiStatus.SUCCESS and rep.transaction_id == tid
        assert device.issued(rep)[0].subject.rfc4514_string() == "CN=over-tls"
        # the same page over plain HTTP is refused: it hands out credentials
        async with session.get(f"{gateway.info.http}/certsrv/mscep_admin/", headers=auth) as resp:
            assert resp.status == 403
