"""``/metrics`` over real sockets: who may scrape it, and counters that move by exactly
what real ACME, SCEP, EST and OCSP clients did (issued, pending, refused by reason).

The registry is per process and shared by every test in it, so each test compares
a scrape before with a scrape after.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import ocsp
from cryptography.x509.oid import AttributeOID, NameOID

from conformance.acme.support import Http01Responder, RawClient, _template, b64url, make_csr, new_config
from conformance.harness import GatewayInfo, GatewayProcess, run_cli, running_gateway
from conformance.scep.simulator import ScepTestClient, parse_cert_rep
from gateway.ca.backend import RevocationReason
from gateway.clock import FakeClock
from gateway.config import load_config
from gateway.errors import ConfigError, ErrorKind, GatewayError
from protocols.scep.types import FailInfo, PkiStatus
from tests.acme.test_server import authorize, issue
from tests.est.helpers import basic, b64 as est_b64, make_csr as est_csr

from .support import csr_pem, make_csr as core_csr

Pair = tuple[Any, GatewayInfo]
SAMPLE = re.compile(r'^(\w+)\{(.*)\} (\S+)$')


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Pair]:
    async with _serve(tmp_path, None) as pair:
        yield pair


def _serve(tmp_path: Path, access: str | None) -> Any:
    """The gateway on a copy of the shared initialised data directory."""
    import contextlib

    @contextlib.asynccontextmanager
    async def run() -> AsyncIterator[Pair]:
        data_dir = tmp_path / "data"
        shutil.copytree(await _template(), data_dir)
        if access is not None:
            cfg = load_config(data_dir)
            cfg.server.metrics = access
            cfg.save()
        async with running_gateway(data_dir) as pair:
            yield pair

    return run()


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            samples[(m.group(1), labels)] = float(m.group(3))
    return samples


async def scrape(info: GatewayInfo) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{info.https}/metrics", ssl=info.ssl_context(),
                               headers={"Authorization": f"Bearer {info.api_key}"}) as resp:
            assert resp.status == 200, await resp.text()
            return parse(await resp.text())


def delta(before: dict[Any, float], after: dict[Any, float]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Counters that moved (``_created`` timestamps and gauges left out)."""
    moved = {}
    for key, value in after.items():
        name = key[0]
        if name.endswith("_created") or not name.endswith("_total"):
            continue
        if value != before.get(key, 0.0):
            moved[key] = value - before.get(key, 0.0)
    return moved


def sample(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def of(moved: dict[tuple[str, frozenset[tuple[str, str]]], float], *names: str) -> dict[Any, float]:
    return {k: v for k, v in moved.items() if k[0] in names}


# --- who may scrape ---------------------------------------------------------------------

async def test_metrics_need_an_admin_key_and_stay_off_plain_http_by_default(served: Pair) -> None:
    _, info = served
    url = f"{info.https}/metrics"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{info.http}/metrics") as resp:
            assert resp.status == 404  # a key never travels in plain HTTP
        async with session.get(url, ssl=info.ssl_context()) as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert "gateway_" not in await resp.text()
        async with session.get(url, ssl=info.ssl_context(), headers={"Authorization": "Bearer wrong"}) as resp:
            assert resp.status == 401
        async with session.get(url, ssl=info.ssl_context(), headers={"X-API-Key": info.api_key}) as resp:
            assert resp.status == 200 and "gateway_http_requests_total" in await resp.text()


@pytest.mark.parametrize("access", ["public", "off"])
async def test_metrics_public_or_off(tmp_path: Path, access: str) -> None:
    async with _serve(tmp_path, access) as (_, info):
        async with aiohttp.ClientSession() as session:
            for base, ctx in ((info.http, True), (info.https, info.ssl_context())):
                async with session.get(f"{base}/metrics", ssl=ctx) as resp:
                    assert resp.status == (200 if access == "public" else 404), base


def test_metrics_setting_is_checked(tmp_path: Path) -> None:
    from gateway.config import Config

    cfg = Config(data_dir=tmp_path)
    cfg.server.metrics = "open"
    cfg.save()
    with pytest.raises(ConfigError, match=r"\[server\].metrics"):
        load_config(tmp_path)


# --- what was done, counted -------------------------------------------------------------

async def test_acme_issued_pending_and_refused_are_counted(served: Pair) -> None:
    gw, info = served
    async with Http01Responder() as web01:
        cid = await new_config(gw, http01_port=web01.port, validation_address="127.0.0.1")
        held = await new_config(gw, approval="manual", http01_port=web01.port, validation_address="127.0.0.1")
        before = await scrape(info)
        async with RawClient(info, cid) as c:
            await c.register()
            await issue(c, web01, "one.example.test")
            reply = await c.order("two.example.test")
            await authorize(c, reply.json, web01)
            assert reply.location
            ready = (await c.poll(reply.location, ("ready",))).json
            assert (await c.post(ready["finalize"], {"csr": b64url(b"garbage")})).problem == "badCSR"
            stale = await c.post(c.directory["newOrder"], {"identifiers": []}, nonce="not-a-nonce")
            assert stale.problem == "badNonce"
        async with RawClient(info, held) as c:
            await c.register()
            reply = await c.order("held.example.test")
            await authorize(c, reply.json, web01)
            assert reply.location
            ready = (await c.poll(reply.location, ("ready",))).json
            der, _ = make_csr(["held.example.test"])
            assert (await c.post(ready["finalize"], {"csr": b64url(der)})).json["status"] == "processing"
        async with RawClient(info, "acme") as c:  # a directory that exists; then one that does not
            async with c.session.get(f"{info.https}/acme/no-such-config/directory") as resp:  # type: ignore[union-attr]
                assert resp.status == 404
    moved = delta(before, await scrape(info))
    assert of(moved, "gateway_enrollments_total") == {
        sample("gateway_enrollments_total", protocol="acme", configuration=cid, outcome="issued", reason=""): 1,
        sample("gateway_enrollments_total", protocol="acme", configuration=held, outcome="pending", reason=""): 1,
    }
    assert of(moved, "gateway_protocol_errors_total") == {
        sample("gateway_protocol_errors_total", protocol="acme", configuration=cid, reason="badCSR"): 1,
        sample("gateway_protocol_errors_total", protocol="acme", configuration=cid, reason="badNonce"): 1,
        sample("gateway_protocol_errors_total", protocol="acme", configuration="(unknown)", reason="malformed"): 1,
    }
    assert of(moved, "gateway_certificates_issued_total") == {
        sample("gateway_certificates_issued_total", ca="issuing"): 1,
    }


async def _ra_certificate(session: aiohttp.ClientSession, url: str) -> x509.Certificate:
    async with session.get(f"{url}/pkiclient.exe?operation=GetCACert") as resp:
        certs = pkcs7.load_der_pkcs7_certificates(await resp.read())
    return next(c for c in certs if not c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)


def _scep_csr(client: ScepTestClient, challenge: str | None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, client.cn)]))
    if challenge is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
    return builder.sign(client.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


async def test_scep_issued_and_refused_by_fail_info_are_counted(served: Pair) -> None:
    _, info = served
    scep = info.data["protocols"]["scep"][0]
    before = await scrape(info)
    async with aiohttp.ClientSession() as session:
        ra = await _ra_certificate(session, scep["url"])
        answers: list[Any] = []
        for challenge in (scep["challenge"], "wrong-challenge"):
            client = ScepTestClient(ra, cn=f"device-{len(answers)}")
            body, _, _ = client.pkcs_req(_scep_csr(client, challenge))
            async with session.post(f"{scep['url']}/pkiclient.exe?operation=PKIOperation", data=body,
                                    headers={"Content-Type": "application/x-pki-message"}) as resp:
                answers.append(parse_cert_rep(await resp.read()))
        async with session.post(f"{scep['url']}/pkiclient.exe?operation=PKIOperation", data=b"junk",
                                headers={"Content-Type": "application/x-pki-message"}) as resp:
            assert resp.status == 400
    assert answers[0].status is PkiStatus.SUCCESS
    assert answers[1].status is PkiStatus.FAILURE and answers[1].fail_info is FailInfo.BAD_REQUEST
    moved = delta(before, await scrape(info))
    assert of(moved, "gateway_enrollments_total") == {
        sample("gateway_enrollments_total", protocol="scep", configuration="scep", outcome="issued", reason=""): 1,
    }
    assert of(moved, "gateway_protocol_errors_total") == {
        sample("gateway_protocol_errors_total", protocol="scep", configuration="scep", reason="badRequest"): 1,
        sample("gateway_protocol_errors_total", protocol="scep", configuration="scep", reason="malformedMessage"): 1,
    }


async def test_est_issued_and_refused_are_counted(served: Pair) -> None:
    _, info = served
    est = info.data["protocols"]["est"][0]
    before = await scrape(info)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=info.ssl_context())) as session:
        statuses = []
        for password, body in ((est["password"], est_b64(est_csr("est-device")[0])),
                               (est["password"], b"not base64 at all!"),
                               ("wrong-password", est_b64(est_csr("est-device")[0]))):
            async with session.post(f"{est['url']}/simpleenroll", data=body, headers={
                "Content-Type": "application/pkcs10", "Authorization": basic(est["username"], password),
            }) as resp:
                statuses.append(resp.status)
    assert statuses == [200, 400, 401]
    moved = delta(before, await scrape(info))
    assert of(moved, "gateway_enrollments_total") == {
        sample("gateway_enrollments_total", protocol="est", configuration="est", outcome="issued", reason=""): 1,
    }
    assert of(moved, "gateway_protocol_errors_total") == {
        sample("gateway_protocol_errors_total", protocol="est", configuration="est", reason="bad_request"): 1,
        sample("gateway_protocol_errors_total", protocol="est", configuration="est", reason="unauthorized"): 1,
    }


async def test_core_refusal_through_the_door_is_counted_with_its_kind(served: Pair) -> None:
    gw, info = served
    cid = await new_config(gw)
    door = gw.door("acme")
    before = await scrape(info)
    with pytest.raises(GatewayError) as refused:
        await door.enroll(cid, b"not a CSR", entity="e1")
    assert refused.value.kind is ErrorKind.BAD_CSR
    await door.enroll(cid, core_csr(cn="door.example.test", sans=["door.example.test"])[0], entity="e2",
                      profile="tls-server")
    moved = delta(before, await scrape(info))
    assert of(moved, "gateway_enrollments_total") == {
        sample("gateway_enrollments_total", protocol="acme", configuration=cid, outcome="refused",
               reason="bad_csr"): 1,
        sample("gateway_enrollments_total", protocol="acme", configuration=cid, outcome="issued", reason=""): 1,
    }


async def test_ocsp_by_status_and_crl_age_on_the_gateway_clock(tmp_path: Path) -> None:
    clock = FakeClock(dt.datetime.now(dt.timezone.utc).replace(microsecond=0))  # the store keeps seconds
    data_dir = tmp_path / "data"
    shutil.copytree(await _template(), data_dir)
    async with running_gateway(data_dir, clock=clock) as (gw, info):
        issued = await gw.authority.issue_direct("issuing", core_csr()[0], "device", actor="test")
        ca_cert = issued.chain[0]
        await gw.authority.crl("issuing", force=True)  # thisUpdate: the gateway clock's now
        async with aiohttp.ClientSession() as session:
            before = await scrape(info)

            async def ask(path: str = "/ocsp/issuing") -> None:
                req = ocsp.OCSPRequestBuilder().add_certificate(issued.certificate, ca_cert, hashes.SHA1()).build()
                async with session.post(f"{info.http}{path}", data=req.public_bytes(serialization.Encoding.DER),
                                        headers={"Content-Type": "application/ocsp-request"}) as resp:
                    assert resp.status == 200

            await ask()
            await gw.authority.revoke(format(issued.serial, "x"), RevocationReason.key_compromise, actor="test")
            await ask()
            await ask("/ocsp/made-up-ca")
            async with session.post(f"{info.http}/ocsp/issuing", data=b"junk",
                                    headers={"Content-Type": "application/ocsp-request"}) as resp:
                assert resp.status == 200
            clock.advance(dt.timedelta(seconds=90))
            after = await scrape(info)
    moved = of(delta(before, after), "gateway_ocsp_responses_total")
    assert moved == {
        sample("gateway_ocsp_responses_total", ca="issuing", status="good"): 1,
        sample("gateway_ocsp_responses_total", ca="issuing", status="revoked"): 1,
        sample("gateway_ocsp_responses_total", ca="issuing", status="malformed_request"): 1,
        sample("gateway_ocsp_responses_total", ca="(unknown)", status="unauthorized"): 1,
    }
    age = sample("gateway_crl_age_seconds", ca="issuing")
    assert (before[age], after[age]) == (0, 90)  # aged by the gateway's clock alone


async def test_cli_issuance_shows_on_every_worker_of_the_running_server(tmp_path: Path) -> None:
    """``gateway cert issue`` is another process: the server's own counters never see it,
    so it is counted from the store at each scrape, alike on every worker."""
    data_dir = tmp_path / "data"
    shutil.copytree(await _template(), data_dir)
    cfg = load_config(data_dir)
    cfg.server.workers = 2
    cfg.save()
    (tmp_path / "req.pem").write_bytes(csr_pem(core_csr(cn="cli.example.test", sans=["cli.example.test"])[0]))
    cli, admin = (sample("gateway_direct_issued_total", ca="issuing", source=s) for s in ("cli", "admin"))
    with GatewayProcess(data_dir) as info:
        before = await scrape(info)
        run_cli("cert", "issue", "--csr", str(tmp_path / "req.pem"), "--profile", "tls-server", data_dir=data_dir)
        afters = [await scrape(info) for _ in range(6)]  # a new connection each: either worker
    for after in afters:
        assert (after.get(cli, 0) - before.get(cli, 0), after.get(admin, 0) - before.get(admin, 0)) == (1, 0)


async def test_the_store_counts_certificates_outside_configurations_by_event_and_actor(store: Any) -> None:
    """The scrape-time query on both engines: a configuration's own certificates are
    not in it, and one whose issuance event is missing still counts (type and actor None)."""
    from gateway.store.records import EventRecord

    from .test_store import make_ca, make_cert

    certs = [make_cert(), make_cert(), make_cert(), make_cert(), make_cert(protocol_config="acme")]
    events = [("issue", "cli"), ("issue", "apikey:ops"), ("internal_issue", "bootstrap"), None, ("issue", "acme")]
    async with store.transaction() as q:
        await q.cas.insert(make_ca())
        for cert, event in zip(certs, events):
            await q.certificates.insert(cert)
            if event is not None:
                await q.events.add(EventRecord(type=event[0], status="success", ca_id="root1", serial=cert.serial,
                                               detail={"actor": event[1]}))
        await q.events.add(EventRecord(type="revoke", status="success", ca_id="root1", serial=certs[0].serial,
                                       detail={"actor": "cli"}))
    async with store.read() as q:
        rows = await q.certificates.outside_configurations()
    assert sorted(rows, key=str) == sorted([
        ("root1", "issue", "cli", 1), ("root1", "issue", "apikey:ops", 1),
        ("root1", "internal_issue", "bootstrap", 1), ("root1", None, None, 1),
    ], key=str)


async def test_every_worker_answers_with_the_counters_of_all_workers(tmp_path: Path) -> None:
    """With two workers, requests land on both (the kernel picks); any scrape sums them."""
    data_dir = tmp_path / "data"
    shutil.copytree(await _template(), data_dir)
    cfg = load_config(data_dir)
    cfg.server.workers = 2
    cfg.save()
    healthz = sample("gateway_http_requests_total", method="GET", route="/healthz", status="200")
    with GatewayProcess(data_dir) as info:
        seen: set[int] = set()
        async with aiohttp.ClientSession() as session:
            for _ in range(40):  # a new connection each: either worker answers
                async with session.get(f"{info.http}/healthz", headers={"Connection": "close"}) as resp:
                    seen.add((await resp.json())["worker"])
        assert seen == {0, 1}
        scrapes = [await scrape(info) for _ in range(6)]
    counts = [s.get(healthz, 0) for s in scrapes]
    # every scrape sees at least the 40 probes (plus the harness's readiness probes), whichever worker answered
    assert all(c >= 40 for c in counts), counts
    assert counts == sorted(counts)
