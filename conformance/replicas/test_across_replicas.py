"""What every replica must agree on, with each step sent to a different replica.

Three replicas on one PostgreSQL database (haproxy in front, used for a sanity request;
the steps go to each replica's own ports so which replica answers is known): an ACME
nonce from one is redeemed at another and refused at the third; a rate limit counts the
orders placed at all three; a one-time SCEP challenge made at one enrolls at another and
is refused at the third; a configuration change made at one applies at the others on
their next request; a request held for approval at one is approved at another and
collected at the third; the cluster-wide jobs have one holder each.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from bench.acme_client import make_csr
from bench.scep_load import get_ca_certs
from bench.scep_message import ScepCheckFailed, check_cert_rep, make_device, pkcs_req, recipient
from conformance.acme.support import RawClient
from conformance.harness import GatewayInfo
from gateway.store import Store
from gateway.store.records import utcnow
from tests.conftest import fresh_pg_database

from .cluster import Cluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with fresh_pg_database("test_across") as url:  # fails under CI=true, skips elsewhere
        c = Cluster(tmp_path, url, 3)
        await c.start()
        await asyncio.to_thread(c.serve)
        try:
            yield c
        finally:
            c.stop()


def at(cluster: Cluster, index: int) -> GatewayInfo:
    """The cluster's info with replica ``index``'s own URLs (the steps below pick the replica)."""
    info = cluster.info_now()
    r = cluster.replicas[index]
    return GatewayInfo({**info.data, "https": f"https://127.0.0.1:{r.https_port}",
                        "http": f"http://127.0.0.1:{r.http_port}"}, info.data_dir)


async def admin(info: GatewayInfo, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"{info.https}/admin{path}", json=body, ssl=info.ssl_context(),
                                   headers={"Authorization": f"Bearer {info.api_key}"}) as resp:
            return resp.status, await resp.json(content_type=None)


def _replica_url(url: str, info: GatewayInfo) -> str:
    """An ACME URL one replica handed out, as another replica names it (its own origin)."""
    path = url.split("/", 3)[3]
    return f"{info.https}/{path}"


async def test_acme_nonces_and_rate_limits_hold_across_replicas(cluster: Cluster) -> None:
    r0, r1, r2 = (at(cluster, i) for i in range(3))
    status, _ = await admin(r0, "PATCH", "/protocol-configs/acme",
                            {"settings": {"rate_limits": {"orders_per_account": "3/PT1H"}}})
    assert status == 200
    async with RawClient(r0, "acme") as c0, RawClient(r1, "acme") as c1, RawClient(r2, "acme") as c2:
        nonce = await c0.nonce()  # issued by replica 0
        c1.key = c2.key = c0.key
        created = await c1.post(c1.directory["newAccount"], {"termsOfServiceAgreed": True}, kid=False, nonce=nonce)
        assert created.status == 201, created.json  # redeemed at replica 1
        replayed = await c2.post(c2.directory["newAccount"], {"termsOfServiceAgreed": True}, kid=False, nonce=nonce)
        assert replayed.status == 400 and replayed.problem == "badNonce", replayed.json  # and only once
        assert created.location is not None
        for c, info in ((c0, r0), (c1, r1), (c2, r2)):
            c.kid = _replica_url(created.location, info)
        for i, c in enumerate((c0, c1, c2)):  # one order at each replica
            placed = await c.order(f"limit-{i}.example.test")
            assert placed.status == 201, placed.json
        refused = await c0.order("limit-3.example.test")  # the fourth, counted cluster-wide
        assert refused.status == 429 and refused.problem == "rateLimited", refused.json
        assert "Retry-After" in refused.headers


async def _pkcs_req(info: GatewayInfo, challenge: str, cn: str) -> x509.Certificate:
    known = await get_ca_certs(f"{info.http}/scep/scep")
    request = pkcs_req(make_device(cn, rsa.generate_private_key(public_exponent=65537, key_size=2048)), cn,
                       challenge, recipient(known))
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{info.http}/scep/scep?operation=PKIOperation", data=request.body,
                                headers={"Content-Type": "application/x-pki-message"}) as resp:
            assert resp.status == 200
            return check_cert_rep(request, await resp.read(), known)


async def test_a_one_time_scep_challenge_is_single_use_across_replicas(cluster: Cluster) -> None:
    r0, r1, r2 = (at(cluster, i) for i in range(3))
    status, body = await admin(r0, "POST", "/scep/scep/challenges", {})
    assert status == 201, body
    cert = await _pkcs_req(r1, body["challenge"], "once-a")
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "once-a"
    with pytest.raises(ScepCheckFailed, match="pkiStatus 2"):
        await _pkcs_req(r2, body["challenge"], "once-b")


def _csr(cn: str) -> bytes:
    return base64.b64encode(make_csr(cn)[0])


async def _est(info: GatewayInfo, body: bytes) -> tuple[int, bytes]:
    est = next(e for e in info.data["protocols"]["est"] if e["config"] == "est")
    url = est["url"].replace(cluster_public(info), info.https)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/simpleenroll", data=body, ssl=info.ssl_context(),
                                headers={"Content-Type": "application/pkcs10", "Authorization": "Basic " + base64.b64encode(
                                    f"{est['username']}:{est['password']}".encode()).decode()}) as resp:
            return resp.status, await resp.read()


def cluster_public(info: GatewayInfo) -> str:
    """The public (load balancer) origin the configuration URLs name."""
    est = next(e for e in info.data["protocols"]["est"] if e["config"] == "est")
    return "/".join(str(est["url"]).split("/", 3)[:3])


async def test_configuration_changes_and_approvals_are_seen_by_every_replica(cluster: Cluster) -> None:
    r0, r1, r2 = (at(cluster, i) for i in range(3))
    assert (await _est(r1, _csr("before.example.test")))[0] == 200
    assert (await admin(r0, "PATCH", "/protocol-configs/est", {"enabled": False}))[0] == 200
    for info in (r1, r2):  # disabled at replica 0: the others refuse on their next request
        status, _ = await _est(info, _csr("disabled.example.test"))
        assert status in (403, 404), status
    assert (await admin(r2, "PATCH", "/protocol-configs/est",
                        {"enabled": True, "settings": {"approval": "manual"}}))[0] == 200
    held_csr = _csr("held.example.test")
    status, _ = await _est(r0, held_csr)
    assert status == 202  # held for approval at replica 0
    status, pending = await admin(r1, "GET", "/requests")
    assert status == 200
    request = next(r for r in pending["items"] if r["protocol_config"] == "est")
    status, _ = await admin(r1, "POST", f"/requests/{request['id']}/approve", {})
    assert status == 200  # approved at replica 1
    status, answer = await _est(r2, held_csr)  # collected at replica 2
    assert status == 200, answer
    issued = pkcs7.load_der_pkcs7_certificates(base64.b64decode(answer))[0]
    assert issued.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "held.example.test"


async def test_cluster_wide_jobs_have_one_holder_and_the_balancer_routes(cluster: Cluster) -> None:
    info = cluster.info_now()  # through haproxy
    async with aiohttp.ClientSession() as session:
        workers = set()
        for _ in range(6):
            async with session.get(f"{info.http}/healthz", headers={"Connection": "close"}) as resp:
                assert resp.status == 200
                workers.add((await resp.json())["status"])
        assert workers == {"ok"}
    store_url = next(line.split("=", 1)[1].strip().strip('"')
                     for line in (cluster.replicas[0].data_dir / "config.toml").read_text().splitlines()
                     if line.strip().startswith("url"))
    async with await Store.open(store_url) as store:
        async with store.read() as q:
            holder = await q.leases.holder("crl-refresh", utcnow())
    assert holder is not None  # one replica runs the CRL refresh (the lease names one holder)


JOBS = ("crl-refresh", "upstream-poll")


async def _job_runs(info: GatewayInfo) -> dict[str, float]:
    """``gateway_cluster_job_runs_total`` per job, scraped from one replica."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{info.https}/metrics", ssl=info.ssl_context(),
                               headers={"Authorization": f"Bearer {info.api_key}"}) as resp:
            assert resp.status == 200
            text = await resp.text()
    runs = dict.fromkeys(JOBS, 0.0)
    for line in text.splitlines():
        for job in JOBS:
            if line.startswith(f'gateway_cluster_job_runs_total{{job="{job}"}} '):
                runs[job] = float(line.rsplit(" ", 1)[1])
    return runs


async def _runs(cluster: Cluster, alive: list[int]) -> dict[int, dict[str, float]]:
    return {i: await _job_runs(at(cluster, i)) for i in alive}


async def test_each_cluster_wide_job_runs_at_one_replica_and_another_takes_over_when_it_is_killed(
    tmp_path: Path,
) -> None:
    """Jobs every second, leases that outlast a dead holder by one more second: in each
    window exactly one replica's run counter moves per job (the others' stay put), and
    after the holder is killed -9 one of the survivors, and only one, runs it."""
    async with fresh_pg_database("test_jobs") as url:
        c = Cluster(tmp_path, url, 3, ca={"crl_check_interval": 1.0, "upstream_poll_interval": 1.0,
                                          "lease_margin": 1.0})
        await c.start()
        await asyncio.to_thread(c.serve)
        try:
            alive = [0, 1, 2]

            async def window(seconds: float) -> dict[str, int]:
                """Which replica ran each job during ``seconds`` (asserting only one did)."""
                before = await _runs(c, alive)
                await asyncio.sleep(seconds)
                after = await _runs(c, alive)
                runner: dict[str, int] = {}
                for job in JOBS:
                    moved = [i for i in alive if after[i][job] > before[i][job]]
                    assert len(moved) == 1, (job, before, after)
                    runner[job] = moved[0]
                return runner

            await asyncio.sleep(2.5)  # every job has run once somewhere
            first = await window(3.5)
            assert await window(3.5) == first  # the same holder keeps it
            killed = first["crl-refresh"]
            c.kill(killed)
            alive.remove(killed)
            await asyncio.sleep(2 * 1.0 + 1.0 + 2.0)  # the dead holder's leases run out
            taken = await window(3.5)
            assert killed not in taken.values()
            assert await window(3.5) == taken
            took_over = [i for i in alive
                         if "now runs the cluster-wide job crl-refresh" in c.replicas[i].log_path.read_text()]
            assert took_over == [taken["crl-refresh"]], took_over
        finally:
            c.stop()
