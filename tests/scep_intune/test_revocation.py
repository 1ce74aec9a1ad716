"""Intune's revocation queue carried out: the simulator queues, a sync pass (in process,
from the CLI, and from the scheduler with its lease) revokes through the door, uploads
the results, and the gateway's OCSP responder and CRL then say revoked."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from cryptography import x509

from conformance.scep.support import run
from gateway.store.records import EventFilter
from protocols.scep.intune.client import NON_RETRYABLE, NOT_FOUND
from protocols.scep.intune.clients import IntuneClients
from protocols.scep.intune.revocation import RevocationSync, sync_revocations

from .conftest import CA, CONFIG, IntuneEnv


async def enroll(env: IntuneEnv, workdir: Path, cn: str) -> tuple[x509.Certificate, Path]:
    challenge = env.sim.issue_challenge(cn)
    code, out = await env.scepclient(workdir, "-challenge", challenge, "-cn", cn)
    assert code == 0, out
    return x509.load_pem_x509_certificate((workdir / "client.pem").read_bytes()), workdir / "client.pem"


async def ocsp_status(env: IntuneEnv, cert: Path) -> str:
    info = env.served.info
    ca = info.ca(CA)
    result = await run("openssl", "ocsp", "-issuer", ca["certificate"], "-cert", str(cert), "-url", ca["ocsp"],
                       "-CAfile", info.ca("root")["certificate"], "-verify_other", ca["certificate"])
    assert "Response verify OK" in result.stdout + result.stderr, result.stdout + result.stderr
    return result.stdout


async def crl_lists(env: IntuneEnv, cert: x509.Certificate) -> bool:
    """The CA's CRL from its CDP URL (aiohttp: the gateway serves on this loop)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(env.served.info.ca(CA)["crl"]) as resp:
            assert resp.status == 200
            crl = x509.load_der_x509_crl(await resp.read())
    return crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None


async def revoke_events(env: IntuneEnv, cert: x509.Certificate) -> list[object]:
    events = await env.served.core.list_events(EventFilter(type="revoke", protocol_config=CONFIG))
    return [e for e in events if e.serial == format(cert.serial_number, "x") and e.status == "success"]


async def test_a_queued_revocation_is_applied_reported_and_published(env: IntuneEnv, tmp_path: Path) -> None:
    cert, pem = await enroll(env, tmp_path / "d", "wiped-device")
    assert "good" in await ocsp_status(env, pem)
    context = env.sim.queue_revocation(format(cert.serial_number, "X"), cert.issuer.rfc4514_string())

    rec = await env.door.configuration(CONFIG)
    clients = IntuneClients(env.door)
    try:
        intune = (await env.served.scep.context(CONFIG)).settings.intune
        assert intune is not None
        report = await sync_revocations(env.door, await clients.client(CONFIG, intune), rec)
    finally:
        await clients.close()

    assert report.revoked == 1 and report.as_dict()["not_found"] == 0
    assert env.sim.revocation_results == [
        {"requestContext": context, "succeeded": True, "errorCode": 0, "errorMessage": ""}]
    out = await ocsp_status(env, pem)
    assert ": revoked" in out and "Reason: cessationOfOperation" in out, out
    assert await crl_lists(env, cert)
    events = await revoke_events(env, cert)
    assert len(events) == 1 and events[0].detail["actor"] == f"intune:{CONFIG}"  # type: ignore[attr-defined]
    audited = await env.served.core.list_events(EventFilter(type="intune_revocation", protocol_config=CONFIG))
    assert [(e.status, e.detail["request_context"]) for e in audited] == [("success", context)]


async def test_a_second_pass_does_not_revoke_twice_and_reports_each_case(env: IntuneEnv, tmp_path: Path) -> None:
    cert, _ = await enroll(env, tmp_path / "d", "retired-device")
    serial = format(cert.serial_number, "X")
    issuer = cert.issuer.rfc4514_string()
    first = env.sim.queue_revocation(serial, issuer)
    out = json.loads(await env.cli("scep", "intune", "sync", "--config", CONFIG))
    assert out["revoked"] == 1

    # the same request again (as after a crash before the upload), a serial nobody issued,
    # the right serial under another issuer, and a certificate of another configuration
    code, text = await env.scepclient(tmp_path / "other", "-challenge", env.served.dev["challenge"], "-cn", "bystander",
                                      config="scep")
    assert code == 0, text
    bystander = x509.load_pem_x509_certificate((tmp_path / "other" / "client.pem").read_bytes())
    again = env.sim.queue_revocation(serial, issuer)
    unknown = env.sim.queue_revocation("DEADBEEF0123", issuer)
    wrong_issuer = env.sim.queue_revocation(serial, "CN=Somebody Else's CA,O=Elsewhere")
    not_ours = env.sim.queue_revocation(format(bystander.serial_number, "X"), bystander.issuer.rfc4514_string())
    out = json.loads(await env.cli("scep", "intune", "sync", "--config", CONFIG))
    assert (out["revoked"], out["already_revoked"], out["not_found"], out["not_ours"]) == (0, 1, 2, 1), out

    results = {r["requestContext"]: r for r in env.sim.revocation_results}
    assert results[first]["succeeded"] and results[again]["succeeded"] and results[again]["errorCode"] == 0
    assert (results[unknown]["succeeded"], results[unknown]["errorCode"]) == (False, NOT_FOUND)
    assert (results[wrong_issuer]["succeeded"], results[wrong_issuer]["errorCode"]) == (False, NOT_FOUND)
    assert (results[not_ours]["succeeded"], results[not_ours]["errorCode"]) == (False, NON_RETRYABLE)
    assert len(await revoke_events(env, cert)) == 1  # revoked once
    other = await env.served.core.list_certificates()
    assert next(c for c in other if c.serial == format(bystander.serial_number, "x")).status == "valid"


async def test_the_scheduled_sync_runs_in_one_replica_at_a_time(env: IntuneEnv, tmp_path: Path) -> None:
    cert, _ = await enroll(env, tmp_path / "d", "lease-device")
    await env.set_intune("--revocation-sync-seconds", "600")
    context = env.sim.queue_revocation(format(cert.serial_number, "X"), cert.issuer.rfc4514_string())
    replicas = [RevocationSync(env.door, IntuneClients(env.door)) for _ in range(2)]
    try:
        await replicas[0].run_due()
        await replicas[1].run_due()  # the lease is the first one's: no pass here
        assert [r["requestContext"] for r in env.sim.revocation_results] == [context]
        assert len(env.sim.revocation_downloads) == 1
        await replicas[0].stop()  # gives the lease up: the other takes over on its next look
        second = env.sim.queue_revocation(format(cert.serial_number, "X"), cert.issuer.rfc4514_string())
        await replicas[1].run_due()
        assert [r["requestContext"] for r in env.sim.revocation_results] == [context, second]
    finally:
        for replica in replicas:
            await replica.stop()
            await replica._clients.close()  # noqa: SLF001 - the test made them


async def test_the_served_gateway_runs_one_schedule(env: IntuneEnv) -> None:
    """Wired by the adapter on the HTTPS app only (the lease handles other processes)."""
    names = [t.get_name() for t in asyncio.all_tasks()]
    assert names.count("scep-intune-revocations") == 1, names
