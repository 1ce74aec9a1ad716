"""ACME upstream (RFC 8555 as a client): a public or private ACME CA signs what this
gateway's protocols accept.

The gateway holds one ACME account per upstream CA (its key sealed in the CA record; an
EAB key is used once, when the account is made, and not kept). For each request it
places an order for the CSR's names, answers the challenges, finalizes with the CSR and
downloads the chain. Challenges: ``http-01`` is answered by the gateway itself on its
plain-HTTP listener (the upstream must reach that listener on port 80 under each name;
tokens live in this process, so behind a load balancer every replica must get the
validation, or use dns-01), or ``dns-01`` through an operator's hook command
(``<hook> present|cleanup <domain> <txt value>``, as certbot's manual hooks do).
Only names an ACME CA validates can be ordered: DNS names and IP addresses from the
CSR's SANs and a DNS-shaped common name; anything else is refused before the order.
Revocation goes upstream (revokeCert, signed by the account key).

certbot's ``acme`` package is the client (a well-kept, typed implementation of RFC 8555
with JWS, nonces and retries); it is synchronous, so each call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import subprocess
import tempfile
import threading
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ...errors import BadRequest, PolicyViolation, Unavailable
from ...sealing import Sealer
from ...store.records import CARecord
from ..backend import CABackend, Capabilities, RevocationReason, Signed, SignRequest, SignResult
from ..builder import is_valid_dns_name
from ..pem import load_certificate, load_certificates
from .http01 import Http01Tokens

KIND = "acme"
CHALLENGES = ("http-01", "dns-01")
ORDER_TIMEOUT = dt.timedelta(seconds=120)
log = logging.getLogger(__name__)


def _identifiers(csr: x509.CertificateSigningRequest) -> list[str]:
    """The names an ACME order can carry, or a refusal that says which one cannot."""
    names: list[str] = []
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    for general in sans:
        if isinstance(general, x509.DNSName):
            names.append(general.value)
        elif isinstance(general, x509.IPAddress):
            names.append(str(general.value))
        else:
            raise PolicyViolation(f"an ACME CA validates DNS names and IP addresses only, not {general!r}")
    for attr in csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
        cn = str(attr.value)
        if cn not in names:
            if not is_valid_dns_name(cn):
                raise PolicyViolation(f"the common name {cn!r} is no DNS name, which an ACME CA cannot validate")
            names.append(cn)
    if not names:
        raise PolicyViolation("the request names nothing an ACME CA can validate (no DNS name or IP address)")
    return names


class AcmeUpstream(CABackend):
    capabilities = Capabilities(needs_csr=True)

    def __init__(self, record: CARecord, sealer: Sealer, tokens: Http01Tokens) -> None:
        import josepy

        if record.certificate_pem is None:
            raise Unavailable(f"CA {record.id} has no certificate")
        s = record.backend_settings
        self.id = record.id
        self.directory = str(s["directory"])
        self.challenge = str(s.get("challenge", "http-01"))
        self.dns_hook = s.get("dns_hook")
        self.profile = s.get("profile")
        self._account_url = str(s["account_url"])
        self._jwk = josepy.JWK.json_loads(sealer.unseal(str(s["account_key"]), f"{record.id}:account_key"))
        self._trust_pem = s.get("trust_pem")
        self._tokens = tokens
        self._certificate = load_certificate(record.certificate_pem)
        self._issuers = tuple(load_certificates(record.chain_pem))
        self._client: Any = None
        self._lock = threading.Lock()
        self._trust_file: str | None = None

    # --- the acme client, in worker threads ------------------------------------
    def _acme(self) -> Any:
        from acme import client, messages

        with self._lock:
            if self._client is None:
                verify: Any = True
                if self._trust_pem:
                    fd, self._trust_file = tempfile.mkstemp(prefix="gateway-acme-trust-", suffix=".pem")
                    with os.fdopen(fd, "w") as f:
                        f.write(self._trust_pem)
                    verify = self._trust_file
                account = messages.RegistrationResource(body=messages.Registration(), uri=self._account_url)
                net = client.ClientNetwork(self._jwk, account=account, alg=_alg(self._jwk), verify_ssl=verify,
                                           user_agent="enrollment-gateway")
                self._client = client.ClientV2(client.ClientV2.get_directory(self.directory, net), net)
            return self._client

    def _order(self, csr: x509.CertificateSigningRequest) -> x509.Certificate:
        from acme import challenges

        _identifiers(csr)  # refused before an order is placed
        acme = self._acme()
        pem = csr.public_bytes(serialization.Encoding.PEM)
        order = acme.new_order(pem, profile=self.profile) if self.profile else acme.new_order(pem)
        published: list[tuple[str, str, str]] = []
        try:
            for authz in order.authorizations:
                if authz.body.status.name == "valid":
                    continue
                wanted = challenges.HTTP01 if self.challenge == "http-01" else challenges.DNS01
                chall = next((c for c in authz.body.challenges if isinstance(c.chall, wanted)), None)
                if chall is None:
                    raise PolicyViolation(f"the upstream offers no {self.challenge} challenge for "
                                          f"{authz.body.identifier.value}")
                response, validation = chall.response_and_validation(self._jwk)
                domain = authz.body.identifier.value
                if self.challenge == "http-01":
                    self._tokens.add(chall.chall.encode("token"), validation)
                    published.append(("http-01", chall.chall.encode("token"), ""))
                else:
                    self._hook("present", domain, validation)
                    published.append(("dns-01", domain, validation))
                acme.answer_challenge(chall, response)
            done = acme.poll_and_finalize(order, deadline=dt.datetime.now() + ORDER_TIMEOUT)
        finally:
            for kind, key, value in published:
                if kind == "http-01":
                    self._tokens.remove(key)
                else:
                    try:
                        self._hook("cleanup", key, value)
                    except Unavailable as exc:
                        log.warning("CA %s: dns-01 cleanup for %s failed: %s", self.id, key, exc.detail)
        chain = x509.load_pem_x509_certificates(done.fullchain_pem.encode())
        wanted_key = csr.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        for cert in chain:
            if cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo) == wanted_key:
                return cert
        raise Unavailable(f"CA {self.id}: the upstream's chain holds no certificate for the CSR's key")

    def _hook(self, action: str, domain: str, value: str) -> None:
        if not self.dns_hook:
            raise Unavailable(f"CA {self.id} answers dns-01 but has no dns_hook")
        try:
            subprocess.run([str(self.dns_hook), action, domain, value], check=True, capture_output=True,
                           timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            raise Unavailable(f"CA {self.id}: the dns-01 hook failed to {action} {domain}: "
                              f"{type(exc).__name__}") from None

    async def _run(self, fn: Any, *args: Any) -> Any:
        from acme import errors, messages

        try:
            return await asyncio.to_thread(fn, *args)
        except messages.Error as exc:  # a problem document from the upstream
            kind = (exc.typ or "").rsplit(":", 1)[-1]
            detail = f"the upstream ACME CA refused: {kind}: {exc.detail or ''}".strip()
            if kind in ("unauthorized", "rejectedIdentifier", "badCSR", "caa", "dns", "connection",
                        "incorrectResponse", "unsupportedIdentifier", "malformed", "rejectedProfile"):
                raise PolicyViolation(detail) from None
            raise Unavailable(f"CA {self.id}: {detail}") from None
        except errors.ValidationError as exc:
            problems = "; ".join(_authz_problem(a) for a in exc.failed_authzrs)
            raise PolicyViolation(f"the upstream ACME CA could not validate the names: {problems}") from None
        except errors.TimeoutError:
            raise Unavailable(f"CA {self.id}: the upstream ACME order did not complete in time") from None
        except errors.Error as exc:
            raise Unavailable(f"CA {self.id}: ACME client error: {type(exc).__name__}: {exc}") from None
        except OSError as exc:  # requests' ConnectionError and SSLError are OSErrors
            raise Unavailable(f"CA {self.id}: the upstream ACME CA at {self.directory} is unreachable "
                              f"({type(exc).__name__})") from None

    # --- CABackend ------------------------------------------------------------
    async def sign(self, request: SignRequest) -> SignResult:
        if request.csr is None:
            raise Unavailable(f"CA {self.id} is an ACME upstream and signs CSRs only; this request has none")
        _identifiers(request.csr)  # refuse what cannot be ordered before talking to the upstream
        return Signed(await self._run(self._order, request.csr))

    async def check(self, request: SignRequest) -> None:
        if request.csr is not None:
            _identifiers(request.csr)

    async def revoke(self, serial: int, reason: RevocationReason,
                     invalidity_date: dt.datetime | None = None) -> None:
        raise Unavailable(f"CA {self.id}: ACME revocation needs the certificate")

    async def revoke_certificate(self, certificate: x509.Certificate, reason: RevocationReason,
                                 invalidity_date: dt.datetime | None = None) -> None:
        await self._run(lambda: self._acme().revoke(certificate, int(reason)))

    async def chain(self) -> tuple[x509.Certificate, ...]:
        return (self._certificate, *self._issuers)

    async def close(self) -> None:
        if self._trust_file:
            os.unlink(self._trust_file)
            self._trust_file = None


def _authz_problem(authzr: Any) -> str:
    """What the upstream said about a failed authorization: its challenges' errors."""
    name = authzr.body.identifier.value
    errors = [f"{c.chall.typ}: {c.error.detail or c.error.typ}" for c in authzr.body.challenges if c.error is not None]
    return f"{name}: {', '.join(errors) or authzr.body.status.name}"


def _alg(jwk: Any) -> Any:
    import josepy

    return josepy.ES256 if isinstance(jwk, josepy.JWKEC) else josepy.RS256


async def register(ca_id: str, sealer: Sealer, *, directory: str, email: str | None, eab_kid: str | None,
                   eab_hmac: str | None, trust_pem: str | None, challenge: str, dns_hook: str | None,
                   profile: str | None) -> dict[str, Any]:
    """Make the account at the upstream (with EAB when given) and return the CA record's
    ``backend_settings``: the account key sealed, the EAB key not kept."""
    import josepy
    from acme import client, errors, messages

    if not directory.startswith("https://"):
        raise BadRequest("the ACME upstream directory URL must be https://")
    if challenge not in CHALLENGES:
        raise BadRequest(f"the challenge is one of {list(CHALLENGES)}")
    if challenge == "dns-01" and not dns_hook:
        raise BadRequest("dns-01 needs --upstream-dns-hook (a command: present|cleanup <domain> <value>)")
    if bool(eab_kid) != bool(eab_hmac):
        raise BadRequest("EAB needs both the key id and the HMAC key")
    jwk = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))

    def run() -> str:
        trust_file = None
        try:
            verify: Any = True
            if trust_pem:
                fd, trust_file = tempfile.mkstemp(prefix="gateway-acme-trust-", suffix=".pem")
                with os.fdopen(fd, "w") as f:
                    f.write(trust_pem)
                verify = trust_file
            net = client.ClientNetwork(jwk, alg=josepy.ES256, verify_ssl=verify, user_agent="enrollment-gateway")
            directory_obj = client.ClientV2.get_directory(directory, net)
            acme = client.ClientV2(directory_obj, net)
            eab = (messages.ExternalAccountBinding.from_data(account_public_key=jwk.public_key(), kid=eab_kid,
                                                             hmac_key=eab_hmac, directory=directory_obj)
                   if eab_kid and eab_hmac else None)
            regr = acme.new_account(messages.NewRegistration.from_data(
                email=email, terms_of_service_agreed=True, external_account_binding=eab))
            return str(regr.uri)
        finally:
            if trust_file:
                os.unlink(trust_file)

    try:
        account_url = await asyncio.to_thread(run)
    except messages.Error as exc:
        raise BadRequest(f"the upstream ACME CA refused the account: {exc.typ}: {exc.detail}") from None
    except (errors.Error, OSError) as exc:
        raise BadRequest(f"the upstream ACME CA at {directory} cannot be used: {type(exc).__name__}: {exc}") from None
    return {"directory": directory, "account_url": account_url, "email": email, "challenge": challenge,
            "dns_hook": dns_hook, "profile": profile, "trust_pem": trust_pem,
            "account_key": sealer.seal(json.dumps(jwk.to_json()).encode(), f"{ca_id}:account_key")}
