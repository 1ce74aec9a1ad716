"""An Intune simulator: Entra ID's token endpoint (client credentials), Microsoft Graph's service
discovery for Intune, the ScepRequestValidationFEService and the PkiConnectorFEService, over HTTPS
on loopback. Built from the wire contract of Microsoft's published library (see README.md), not
from the live service; its challenges are one-time random strings, not Intune's encrypted blobs."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import re
import secrets
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import AttributeOID, NameOID

INTUNE_APP_ID = "0000000a-0000-0000-c000-000000000000"
INTUNE_SCOPE = "https://api.manage.microsoft.com//.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SCEP_SERVICE = "ScepRequestValidationFEService"
PKI_SERVICE = "PkiConnectorFEService"
API_VERSIONS = {SCEP_SERVICE: "2018-02-20", PKI_SERVICE: "5019-05-05"}
ACTIONS = {SCEP_SERVICE: ("ScepActions", {"validateRequest", "successNotification", "failureNotification"}),
           PKI_SERVICE: ("CertificateAuthorityRequests", {"downloadRevocationRequests", "uploadRevocationResults"})}
TOKEN_LIFETIME = 3599
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_EXPIRY = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_THUMBPRINT = re.compile(r"^[0-9A-F]{40}$")
_HEX = re.compile(r"^[0-9A-Fa-f]+$")


@dataclass
class Challenge:
    """One challenge handed to a device, accepted once by validateRequest until it expires."""

    value: str
    device_id: str
    user: str
    subject_cn: str | None
    expires: float
    used: bool = False


@dataclass
class Call:
    """One request to an Intune service (ScepActions or CertificateAuthorityRequests)."""

    service: str
    action: str
    path: str
    headers: CIMultiDict[str]  # as received, looked up case-insensitively
    body: Any
    status: int = 0


@dataclass
class _Revocation:
    request_context: str
    serial_number: str
    issuer_name: str
    ca_configuration: str | None
    handed_out: bool = False


@dataclass
class IntuneSimulator:
    """The simulated tenant. Tests drive it through its attributes (``down``, ``fail_next``) and
    methods (``issue_challenge``, ``queue_revocation``, ``move_service``) and read what it saw."""

    directory: Path
    tenant: str = field(default_factory=lambda: str(uuid.uuid4()))
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    client_secret: str = field(default_factory=lambda: "sim~" + secrets.token_urlsafe(30))
    down: bool = False  # every Intune service endpoint answers 503 (the token endpoint and Graph do not)
    fail_next: int = 0  # the next N Intune service calls answer 503
    graph_down: bool = False  # Graph's discovery answers 503
    validations: list[dict[str, Any]] = field(default_factory=list)  # the "request" objects seen
    successes: list[dict[str, Any]] = field(default_factory=list)  # the "notification" objects seen
    failures: list[dict[str, Any]] = field(default_factory=list)
    revocation_downloads: list[dict[str, Any]] = field(default_factory=list)  # the "downloadParameters" seen
    revocation_results: list[dict[str, Any]] = field(default_factory=list)  # each uploaded result
    calls: list[Call] = field(default_factory=list)  # every Intune service call, answered or not
    graph_calls: int = 0
    token_requests: list[str] = field(default_factory=list)  # the scope of each token request
    challenges: dict[str, Challenge] = field(default_factory=dict)
    base_url: str = ""
    client_certificate: x509.Certificate | None = None  # the app's registered certificate (client assertions)
    ca_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = self.directory / "intune-simulator-ca.pem"
        self._tokens: dict[str, tuple[str, float]] = {}
        self._paths = {SCEP_SERVICE: "/intune/scep/0", PKI_SERVICE: "/intune/pki/0"}
        self._moves = 0
        self._revocations: dict[str, _Revocation] = {}
        self._runner: web.AppRunner | None = None

    # -- controls ---------------------------------------------------------------------------------

    def issue_challenge(self, device_id: str, user: str = "", subject_cn: str | None = None,
                        *, valid_for: float = 3600.0) -> str:
        """A challenge validateRequest accepts once (the CSR's challengePassword), for ``valid_for`` s."""
        value = secrets.token_urlsafe(32)
        self.challenges[value] = Challenge(value, device_id, user, subject_cn, time.time() + valid_for)
        return value

    def register_certificate(self, certificate: x509.Certificate) -> None:
        """Upload a certificate to the app registration: client assertions signed by its key sign in."""
        self.client_certificate = certificate

    def expire(self, challenge: str) -> None:
        self.challenges[challenge].expires = time.time() - 1

    def queue_revocation(self, serial_hex: str, issuer_name: str, ca_configuration: str | None = None) -> str:
        """Queue a revocation for downloadRevocationRequests; returns its requestContext."""
        context = str(uuid.uuid4())
        self._revocations[context] = _Revocation(context, serial_hex, issuer_name, ca_configuration)
        return context

    def move_service(self, service: str = SCEP_SERVICE) -> str:
        """Give a service a new URI (Graph lists it; the old one answers 404). Returns the new URI."""
        self._moves += 1
        kind = "scep" if service == SCEP_SERVICE else "pki"
        self._paths[service] = f"/intune/{kind}/{self._moves}"
        return self.service_uri(service)

    def service_uri(self, service: str) -> str:
        return self.base_url + self._paths[service]

    def intune_calls(self, action: str | None = None) -> list[Call]:
        return [c for c in self.calls if action is None or c.action == action]

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        context = self._tls()
        app = web.Application()
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._openid)
        app.router.add_get("/{tenant}/.well-known/openid-configuration", self._openid)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/v1.0/servicePrincipals/{principal}/endpoints", self._endpoints)
        app.router.add_post("/intune/{tail:.*}", self._intune)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"https://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _tls(self) -> ssl.SSLContext:
        """A CA of its own (written to ``ca_file``) and a server certificate for 127.0.0.1 and localhost."""
        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Intune simulator CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False,
                                           encipher_only=False, decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                            x509.DNSName("localhost")]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        chain = self.directory / "intune-simulator-server.pem"
        chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                          + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(chain)
        return context

    # -- Entra ID ----------------------------------------------------------------------------------

    async def _openid(self, request: web.Request) -> web.Response:
        if request.match_info["tenant"] != self.tenant:
            return _aad_error(400, "invalid_tenant", "AADSTS90002: Tenant '{}' not found.".format(
                request.match_info["tenant"]))
        root = f"{self.base_url}/{self.tenant}"
        return web.json_response({
            "issuer": f"{root}/v2.0",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "tenant_region_scope": "EU",
        })

    async def _token(self, request: web.Request) -> web.Response:
        """Client credentials as Entra ID answers them, with its AADSTS texts for the refusals."""
        if request.match_info["tenant"] != self.tenant:
            return _aad_error(400, "invalid_request", f"AADSTS90002: Tenant '{request.match_info['tenant']}' "
                                                      "not found.")
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return _aad_error(400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported "
                                                             "grant type.")
        client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            user, _, password = base64.b64decode(basic[6:]).decode().partition(":")
            client_id, secret = client_id or user, secret or password
        if client_id != self.client_id:
            return _aad_error(400, "unauthorized_client", f"AADSTS700016: Application with identifier "
                                                          f"'{client_id}' was not found in the directory.")
        if form.get("client_assertion_type") == ASSERTION_TYPE:
            refusal = self._assertion_refusal(str(form.get("client_assertion", "")), client_id, request)
            if refusal is not None:
                return _aad_error(401, "invalid_client", f"AADSTS700027: Client assertion failed signature "
                                                         f"validation. {refusal}")
        elif not secrets.compare_digest(secret.encode(), self.client_secret.encode()):
            return _aad_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure the "
                                                     "secret being sent in the request is the client secret "
                                                     f"value, not the client secret ID, for a secret added to "
                                                     f"app '{self.client_id}'.")
        scopes = str(form.get("scope", "")).split()
        scope = next((s for s in scopes if s in (INTUNE_SCOPE, GRAPH_SCOPE)), None)
        if scope is None:
            return _aad_error(400, "invalid_scope", f"AADSTS1002012: The provided value for scope "
                                                    f"{' '.join(scopes)} is not valid.")
        self.token_requests.append(scope)
        token = secrets.token_urlsafe(32)
        self._tokens[token] = (scope, time.time() + TOKEN_LIFETIME)
        return web.json_response({"token_type": "Bearer", "expires_in": TOKEN_LIFETIME,
                                  "ext_expires_in": TOKEN_LIFETIME, "access_token": token})

    def _assertion_refusal(self, assertion: str, client_id: str, request: web.Request) -> str | None:
        """Why a client_assertion JWT does not sign in, or None: signature by the registered
        certificate's key (RS256 or PS256), its thumbprint header, aud, iss == sub, exp."""
        cert = self.client_certificate
        if cert is None:
            return "No certificate is registered for this application."
        try:
            head64, body64, sig64 = assertion.split(".")
            header, claims = json.loads(_unb64(head64)), json.loads(_unb64(body64))
            signature = _unb64(sig64)
        except (ValueError, TypeError):
            return "The assertion is not a JWT."
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return "The assertion is not a JWT."
        der = cert.public_bytes(serialization.Encoding.DER)
        sha1 = _b64url(hashlib.sha1(der).digest())  # noqa: S324 - x5t is SHA-1 by definition
        sha256 = _b64url(hashlib.sha256(der).digest())
        if _unpadded(header.get("x5t")) != sha1 and _unpadded(header.get("x5t#S256")) != sha256:
            return "The key used is not registered for this application (x5t / x5t#S256)."
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            return "The registered certificate has no RSA key."
        signed = f"{head64}.{body64}".encode()
        pad: padding.AsymmetricPadding
        if header.get("alg") == "RS256":
            pad = padding.PKCS1v15()
        elif header.get("alg") == "PS256":
            pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        else:
            return f"Unsupported algorithm {header.get('alg')!r}."
        try:
            key.verify(signature, signed, pad, hashes.SHA256())
        except InvalidSignature:
            return "The signature does not verify with the registered certificate's key."
        audience = f"{self.base_url}/{self.tenant}/oauth2/v2.0/token"
        if claims.get("aud") != audience:
            return f"Invalid audience {claims.get('aud')!r}."
        if not claims.get("iss") == claims.get("sub") == client_id:
            return "iss and sub must be the client id."
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, (int, float)) or exp <= time.time():
            return "The assertion has expired."
        return None

    def _bearer(self, request: web.Request, scope: str) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        entry = self._tokens.get(header[7:])
        return entry is not None and entry[0] == scope and entry[1] > time.time()

    # -- Graph -----------------------------------------------------------------------------------

    async def _endpoints(self, request: web.Request) -> web.Response:
        self.graph_calls += 1
        if self.graph_down:
            return web.json_response({"error": {"code": "serviceNotAvailable"}}, status=503)
        if not self._bearer(request, GRAPH_SCOPE):
            return web.json_response({"error": {"code": "InvalidAuthenticationToken",
                                                "message": "Access token is empty or invalid."}}, status=401)
        if request.match_info["principal"] != f"appId={INTUNE_APP_ID}":
            return web.json_response({"error": {"code": "Request_ResourceNotFound"}}, status=404)
        value = [{"capability": service, "providerId": str(uuid.uuid5(uuid.NAMESPACE_URL, service)),
                  "providerName": service, "providerResourceId": None, "uri": self.service_uri(service)}
                 for service in (SCEP_SERVICE, PKI_SERVICE)]
        value.append({"capability": "EnrollmentServer", "providerId": None, "providerName": "EnrollmentServer",
                      "providerResourceId": None, "uri": self.base_url + "/intune/enrollment"})
        return web.json_response({"@odata.context": f"{self.base_url}/v1.0/$metadata#servicePrincipals"
                                                    f"('{INTUNE_APP_ID}')/endpoints", "value": value})

    # -- Intune ----------------------------------------------------------------------------------

    async def _intune(self, request: web.Request) -> web.Response:
        path = request.path
        for service, prefix in self._paths.items():
            group, actions = ACTIONS[service]
            head, _, action = path.rpartition("/")
            if head == f"{prefix}/{group}" and action in actions:
                break
        else:
            return web.json_response({"error": {"code": "NotFound", "message": f"No route {path}"}}, status=404)
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        call = Call(service, action, path, CIMultiDict(request.headers), body)
        self.calls.append(call)
        response = self._answer(request, call)
        call.status = response.status
        return response

    def _answer(self, request: web.Request, call: Call) -> web.Response:
        if self.down:
            return _service_error(503, "ServiceUnavailable", "The service is unavailable.")
        if self.fail_next > 0:
            self.fail_next -= 1
            return _service_error(503, "ServiceUnavailable", "The service is unavailable.")
        if not self._bearer(request, INTUNE_SCOPE):
            return _service_error(401, "Unauthorized", "The bearer token is missing, expired or not for Intune.")
        expected = API_VERSIONS[call.service]
        if request.headers.get("api-version") != expected:
            return _service_error(400, "BadRequest", f"api-version must be {expected}.")
        if not request.headers.get("content-type", "").startswith("application/json") or \
                not isinstance(call.body, dict):
            return _service_error(400, "BadRequest", "The body must be a JSON object.")
        try:
            uuid.UUID(request.headers.get("client-request-id", ""))
        except ValueError:
            return _service_error(400, "BadRequest", "client-request-id must be a GUID.")
        if not request.headers.get("UserAgent"):
            return _service_error(400, "BadRequest", "UserAgent (the provider name and version) is missing.")
        handler = getattr(self, f"_{call.action}")
        result: web.Response = handler(call.body)
        return result

    def _validateRequest(self, body: dict[str, Any]) -> web.Response:  # noqa: N802 - named after the action
        req = body.get("request")
        if not isinstance(req, dict) or not req.get("transactionId") or not req.get("callerInfo"):
            return _service_error(400, "BadRequest", "request.transactionId and request.callerInfo are required.")
        self.validations.append(req)
        csr = _csr(req.get("certificateRequest"))
        if csr is None:
            return _code("CertificateRequestDecodingFailed")
        try:
            password = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
        except x509.AttributeNotFound:
            return _code("ChallengePasswordMissing")
        value = password.decode() if isinstance(password, bytes) else str(password)
        challenge = self.challenges.get(value)
        if challenge is None or challenge.used:
            return _code("ChallengeDecryptionError")  # not one of ours, or already spent
        if challenge.expires <= time.time():
            return _code("ChallengeExpired")
        if challenge.subject_cn is not None:
            cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            if not cns:
                return _code("SubjectNameMissing")
            if cns[0].value != challenge.subject_cn:
                return _code("SubjectNameMismatch")
        challenge.used = True
        return _code("Success")

    def _successNotification(self, body: dict[str, Any]) -> web.Response:  # noqa: N802
        note = body.get("notification")
        if not isinstance(note, dict):
            return _service_error(400, "BadRequest", "notification is required.")
        self.successes.append(note)
        problems = []
        if not _THUMBPRINT.match(str(note.get("certificateThumbprint", ""))):
            problems.append("certificateThumbprint")
        if not _HEX.match(str(note.get("certificateSerialNumber", ""))):
            problems.append("certificateSerialNumber")
        if not _EXPIRY.match(str(note.get("certificateExpirationDateUtc", ""))):
            problems.append("certificateExpirationDateUtc")
        for name in ("transactionId", "issuingCertificateAuthority", "callerInfo"):
            if not note.get(name):
                problems.append(name)
        if problems:
            return _service_error(400, "BadRequest", f"Invalid or missing: {', '.join(problems)}.")
        if _csr(note.get("certificateRequest")) is None:
            return _code("CertificateRequestDecodingFailed")
        return _code("Success")

    def _failureNotification(self, body: dict[str, Any]) -> web.Response:  # noqa: N802
        note = body.get("notification")
        if not isinstance(note, dict):
            return _service_error(400, "BadRequest", "notification is required.")
        self.failures.append(note)
        description = note.get("errorDescription")
        if not isinstance(note.get("hResult"), int) or not isinstance(description, str) or not description \
                or len(description) > 255 or not note.get("transactionId"):
            return _service_error(400, "BadRequest", "transactionId, hResult and errorDescription (<= 255) "
                                                     "are required.")
        if _csr(note.get("certificateRequest")) is None:
            return _code("CertificateRequestDecodingFailed")
        return _code("Success")

    def _downloadRevocationRequests(self, body: dict[str, Any]) -> web.Response:  # noqa: N802
        params = body.get("downloadParameters")
        if not isinstance(params, dict):
            return _service_error(400, "BadRequest", "downloadParameters is required.")
        self.revocation_downloads.append(params)
        limit = params.get("maxRequests")
        if not isinstance(limit, int) or not 1 <= limit <= 500:
            return _service_error(400, "BadRequest", "maxRequests must be between 1 and 500.")
        issuer = params.get("issuerName")
        out: list[dict[str, Any]] = []
        for item in self._revocations.values():
            if len(out) >= limit:
                break
            if item.handed_out or (issuer is not None and item.issuer_name != issuer):
                continue
            item.handed_out = True
            out.append({"requestContext": item.request_context, "serialNumber": item.serial_number,
                        "issuerName": item.issuer_name, "caConfiguration": item.ca_configuration})
        return web.json_response({"value": out})

    def _uploadRevocationResults(self, body: dict[str, Any]) -> web.Response:  # noqa: N802
        results = body.get("results")
        if not isinstance(results, list) or not results:
            return _service_error(400, "BadRequest", "results must be a non-empty list.")
        accepted = True
        for result in results:
            self.revocation_results.append(result)
            known = isinstance(result, dict) and result.get("requestContext") in self._revocations
            if not known or not isinstance(result.get("succeeded"), bool) \
                    or not isinstance(result.get("errorCode"), int):
                accepted = False
        return web.json_response({"value": accepted})


def _csr(encoded: Any) -> x509.CertificateSigningRequest | None:
    try:
        return x509.load_der_x509_csr(base64.b64decode(str(encoded), validate=True))
    except ValueError:
        return None


def _code(code: str, description: str = "") -> web.Response:
    return web.json_response({"code": code, "errorDescription": description})


def _service_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _unpadded(value: Any) -> str | None:
    """A base64url thumbprint without its padding (msal pads it, RFC 7515 does not)."""
    return value.rstrip("=") if isinstance(value, str) else None


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _aad_error(status: int, error: str, description: str) -> web.Response:
    """Entra ID's error body: the AADSTS text, then trace and correlation ids on further lines."""
    trace, correlation = uuid.uuid4(), uuid.uuid4()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return web.json_response({
        "error": error,
        "error_description": f"{description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {stamp}",
        "error_codes": [int(description[6:].split(":")[0])] if description.startswith("AADSTS") else [],
        "timestamp": stamp, "trace_id": str(trace), "correlation_id": str(correlation),
    }, status=status)


@asynccontextmanager
async def running_simulator(directory: Path) -> AsyncIterator[IntuneSimulator]:
    """A started simulator keeping its CA and server key under ``directory``; stopped on exit."""
    simulator = IntuneSimulator(directory)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()
