"""The Intune client: Entra ID tokens through msal, service discovery through Microsoft Graph, and
the ScepRequestValidationFEService / PkiConnectorFEService calls, shaped as Microsoft's published
library (microsoft/Intune-Resource-Access, src/CsrValidation, its MSAL + Graph generation) sends them.

Intune decides whether a device may have a certificate: a CSR is only signed after ``validate``
answered ``Success``, and Intune learns the outcome from ``notify_success`` / ``notify_failure``.
Revocations are pulled: Intune queues them, the gateway downloads, revokes and uploads results."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import ssl
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.errors import ErrorKind, GatewayError

log = logging.getLogger("gateway.scep.intune")

INTUNE_APP_ID = "0000000a-0000-0000-c000-000000000000"  # Intune's service principal, whose endpoints Graph lists
INTUNE_SCOPE = "https://api.manage.microsoft.com//.default"  # the library's resource URL + "/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SCEP_SERVICE = "ScepRequestValidationFEService"
SCEP_API_VERSION = "2018-02-20"
PKI_SERVICE = "PkiConnectorFEService"
PKI_API_VERSION = "5019-05-05"  # sic: the library's DEFAULT_SERVICE_VERSION for the PKI connector service
MAX_REVOCATION_REQUESTS = 500  # the library's MAXREQUESTS_MAXVALUE
BACKOFF_BASE = 0.5  # seconds before the second attempt; doubled for each further one

# CARequestErrorCodes (carequest/CARequestErrorCodes.java): the errorCode of a revocation result.
NONE = 0
NON_RETRYABLE = 4000
DATA_SERIALIZATION = 4001
PARAMETER_DATA_INVALID = 4002
CRYPTOGRAPHY = 4003
NOT_FOUND = 4004
CONFLICT = 4005  # e.g. the certificate is already revoked
ALREADY_REVOKED = CONFLICT
NOT_SUPPORTED = 4006
PAYLOAD_TOO_LARGE = 4007
RETRYABLE = 4100
SERVICE_UNAVAILABLE = 4101
SERVICE_TOO_BUSY = 4102
AUTHENTICATION = 4103

# Token-endpoint errors another attempt may cure; any other error is the operator's to fix.
_TRANSIENT_TOKEN_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


@dataclass(frozen=True)
class IntuneConnection:
    """Where Intune and Entra ID are, and the app registration the gateway signs in as."""

    tenant: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    authority_url: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com"
    ca_file: Path | None = None  # extra trust (tests: the simulator's CA); verification is always on
    provider: str = "enrollment-gateway/0.1"  # callerInfo and UserAgent (PROVIDER_NAME_AND_VERSION)
    timeout: float = 10.0  # per HTTP call
    retries: int = 3  # attempts in all, on 5xx, timeouts and connection errors (backoff 0.5 s, 1 s, 2 s ...)
    client_certificate: bytes | None = None  # PEM: the app's certificate, instead of a secret
    client_key: bytes | None = field(default=None, repr=False)  # its PEM private key, unencrypted in memory

    def __post_init__(self) -> None:
        has_certificate = self.client_certificate is not None or self.client_key is not None
        if (self.client_secret is not None) == has_certificate or (
                has_certificate and (self.client_certificate is None or self.client_key is None)):
            raise ValueError("an Intune connection needs either a client secret or a certificate and its key")

    def credential(self) -> str | dict[str, str]:
        """msal's client_credential: the secret, or the certificate from which msal signs a
        client_assertion (RS256, x5t = the SHA-1 thumbprint), so the key never leaves the process."""
        if self.client_secret is not None:
            return self.client_secret
        assert self.client_certificate is not None and self.client_key is not None
        certificate = x509.load_pem_x509_certificate(self.client_certificate)
        return {"private_key": self.client_key.decode("ascii"), "thumbprint": _thumbprint(certificate),
                "public_certificate": certificate.public_bytes(Encoding.PEM).decode("ascii")}


class IntuneUnavailable(GatewayError):
    """Entra ID, Graph or Intune could not be reached or answered nonsense: try again later."""

    kind = ErrorKind.UNAVAILABLE


class IntuneAuthError(GatewayError):
    """Entra ID or Intune refused the gateway's credentials (the operator's to fix); never holds the secret."""

    kind = ErrorKind.UNAVAILABLE


class IntuneRefused(GatewayError):
    """Intune answered, with a code other than ``Success`` (IntuneScepServiceException.ErrorCode)."""

    kind = ErrorKind.FORBIDDEN

    def __init__(self, detail: str, code: str, activity_id: str) -> None:
        super().__init__(detail)
        self.code = code
        self.activity_id = activity_id


@dataclass(frozen=True)
class RevocationRequest:
    """A certificate Intune wants revoked (CARevocationRequest)."""

    request_context: str
    serial_number: str
    issuer_name: str
    ca_configuration: str | None


@dataclass(frozen=True)
class RevocationResult:
    """What became of one RevocationRequest (CARevocationResult); error_code is one of the constants above."""

    request_context: str
    succeeded: bool
    error_code: int = 0
    error_message: str = ""


class _Transient(Exception):
    """One attempt failed in a way the next may not (5xx, timeout, connection error)."""


class _Moved(Exception):
    """The discovered service URI answered 404: the service may have moved."""


def _thumbprint(certificate: x509.Certificate) -> str:
    return hashlib.sha1(certificate.public_bytes(Encoding.DER)).hexdigest().upper()  # noqa: S324 - the wire's thumbprint


def _expiry(certificate: x509.Certificate) -> str:
    """Web UTC time with milliseconds, as the library documents (YYYY-MM-DDThh:mm:ss.sssZ)."""
    at = certificate.not_valid_after_utc
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


class IntuneClient:
    """One tenant's Intune; reuse it (msal caches tokens, the client caches the service map)."""

    def __init__(self, connection: IntuneConnection) -> None:
        self._conn = connection
        self._app: Any = None
        self._app_lock = asyncio.Lock()
        self._endpoints: dict[str, str] | None = None
        self._discovery_lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    # -- the API -------------------------------------------------------------------------------

    async def validate(self, transaction_id: str, csr_der: bytes) -> str:
        """Ask Intune whether this CSR (and the challenge in it) is one it issued; returns the activity id."""
        body = {"request": {"transactionId": transaction_id, "certificateRequest": _b64(csr_der),
                            "callerInfo": self._conn.provider}}
        return await self._scep_action("validateRequest", body, transaction_id)

    async def notify_success(self, transaction_id: str, csr_der: bytes, certificate: x509.Certificate,
                             ca_info: str) -> str:
        """Tell Intune the certificate was issued. The library's notification has no field for
        ``ca_info`` (the issuing CA's name in the gateway): it is logged, not sent."""
        body = {"notification": {
            "transactionId": transaction_id,
            "certificateRequest": _b64(csr_der),
            "certificateThumbprint": _thumbprint(certificate),
            "certificateSerialNumber": format(certificate.serial_number, "X"),
            "certificateExpirationDateUtc": _expiry(certificate),
            "issuingCertificateAuthority": certificate.issuer.rfc4514_string(),
            "callerInfo": self._conn.provider,
        }}
        return await self._scep_action("successNotification", body, transaction_id, note=f"ca {ca_info}")

    async def notify_failure(self, transaction_id: str, csr_der: bytes, hresult: int, description: str) -> str:
        """Tell Intune no certificate will come; ``hresult`` is shown to the Intune administrator."""
        body = {"notification": {
            "transactionId": transaction_id,
            "certificateRequest": _b64(csr_der),
            "hResult": hresult,
            "errorDescription": description[:255] or "failed",  # the library: required, at most 255 chars
            "callerInfo": self._conn.provider,
        }}
        return await self._scep_action("failureNotification", body, transaction_id)

    async def download_revocations(self, max_requests: int = 100,
                                   issuer_name: str | None = None) -> list[RevocationRequest]:
        """The revocations Intune has queued for this CA (at most ``max_requests``, 1..500)."""
        if not 1 <= max_requests <= MAX_REVOCATION_REQUESTS:
            raise ValueError(f"max_requests must be between 1 and {MAX_REVOCATION_REQUESTS}")
        body = {"downloadParameters": {"maxRequests": max_requests, "issuerName": issuer_name}}
        activity, answer = await self._call(PKI_SERVICE, "CertificateAuthorityRequests/downloadRevocationRequests",
                                            PKI_API_VERSION, body)
        try:
            out = parse_revocations(answer)
        except IntuneUnavailable as exc:
            self._log_outcome(PKI_SERVICE, "downloadRevocationRequests", activity, "bad answer")
            raise IntuneUnavailable(f"{exc.detail} (activity {activity})") from None
        self._log_outcome(PKI_SERVICE, "downloadRevocationRequests", activity, f"{len(out)} requests")
        return out

    async def upload_revocation_results(self, results: list[RevocationResult]) -> None:
        """Report what became of downloaded revocations; Intune answers ``{"value": true}``."""
        if not results:
            return
        body = {"results": [{"requestContext": r.request_context, "succeeded": r.succeeded,
                             "errorCode": r.error_code, "errorMessage": r.error_message} for r in results]}
        activity, answer = await self._call(PKI_SERVICE, "CertificateAuthorityRequests/uploadRevocationResults",
                                            PKI_API_VERSION, body)
        accepted = answer.get("value")
        if accepted is not True and str(accepted).lower() != "true":
            self._log_outcome(PKI_SERVICE, "uploadRevocationResults", activity, "not recorded")
            raise IntuneUnavailable(f"Intune did not record the revocation results (activity {activity})")
        self._log_outcome(PKI_SERVICE, "uploadRevocationResults", activity, f"{len(results)} results")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._app is not None:
            await asyncio.to_thread(self._app.http_client.close)
            self._app = None

    # -- the SCEP service ------------------------------------------------------------------------

    async def _scep_action(self, action: str, body: dict[str, Any], transaction_id: str, note: str = "") -> str:
        activity, answer = await self._call(SCEP_SERVICE, f"ScepActions/{action}", SCEP_API_VERSION, body)
        code = answer.get("code")
        suffix = f", {note}" if note else ""
        if code == "Success":
            self._log_outcome(SCEP_SERVICE, action, activity, f"Success (transaction {transaction_id}{suffix})")
            return activity
        code = str(code) if code is not None else "Unknown"
        description = str(answer.get("errorDescription") or "")
        self._log_outcome(SCEP_SERVICE, action, activity, f"{code} (transaction {transaction_id}{suffix})")
        raise IntuneRefused(f"Intune refused {action} ({code}{': ' + description if description else ''})",
                            code, activity)

    # -- one Intune call, with discovery, tokens and retries -----------------------------------

    async def _call(self, service: str, path: str, api_version: str,
                    body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """POST to a discovered service: up to ``retries`` attempts on transient failures, and one
        rediscovery when the service URI answers 404 (Intune moved it). Returns (activity id, JSON)."""
        activity = str(uuid.uuid4())
        action = path.rsplit("/", 1)[-1]
        attempts = max(1, self._conn.retries)
        attempt, rediscovered = 0, False
        while True:
            attempt += 1
            try:
                base = await self._service_uri(service, activity)
                token = await self._token(INTUNE_SCOPE)
                headers = {"api-version": api_version, "UserAgent": self._conn.provider}
                return activity, await self._request("POST", f"{base}/{path}", token, activity, headers, body)
            except _Moved:
                self._endpoints = None
                if rediscovered:
                    self._log_outcome(service, action, activity, "404 after rediscovery")
                    raise IntuneUnavailable(f"Intune's {service} answers 404 (activity {activity})") from None
                rediscovered, attempt = True, attempt - 1
                log.warning("intune %s %s activity %s: 404, rediscovering the service", service, action, activity)
                continue
            except _Transient as exc:
                self._endpoints = None  # as the library: the service may have moved
                if attempt >= attempts:
                    self._log_outcome(service, action, activity, f"unavailable after {attempt} attempts: {exc}")
                    raise IntuneUnavailable(f"Intune is unavailable ({exc}; activity {activity})") from None
                delay = BACKOFF_BASE * 2 ** (attempt - 1)
                log.warning("intune %s %s activity %s: attempt %d of %d failed (%s), retrying in %.1f s",
                            service, action, activity, attempt, attempts, exc, delay)
                await asyncio.sleep(delay)
            except GatewayError as exc:
                self._log_outcome(service, action, activity, type(exc).__name__)
                raise

    async def _service_uri(self, service: str, activity: str) -> str:
        async with self._discovery_lock:
            if self._endpoints is None:
                self._endpoints = await self._discover(activity)
            endpoints = self._endpoints
        uri = endpoints.get(service.lower())
        if not uri:
            raise IntuneUnavailable(f"Graph lists no {service} for this tenant (is Intune licensed?)")
        return uri.rstrip("/")

    async def _discover(self, activity: str) -> dict[str, str]:
        """The service map from Graph: Intune's service principal's endpoints, keyed by provider name."""
        token = await self._token(GRAPH_SCOPE)
        url = f"{self._conn.graph_url.rstrip('/')}/v1.0/servicePrincipals/appId={INTUNE_APP_ID}/endpoints"
        try:
            answer = await self._request("GET", url, token, activity, {}, None)
        except _Moved:
            raise IntuneUnavailable("Graph has no Intune service principal for this tenant") from None
        found = parse_discovery(answer)
        log.info("intune graph discovery activity %s: %d services", activity, len(found))
        return found

    async def _request(self, method: str, url: str, token: str, activity: str, headers: dict[str, str],
                       body: dict[str, Any] | None) -> dict[str, Any]:
        session = self._client_session()
        all_headers = {"Authorization": f"Bearer {token}", "client-request-id": activity, **headers}
        data = None
        if body is not None:
            all_headers["content-type"] = "application/json"
            data = json.dumps(body).encode()
        try:
            async with session.request(method, url, headers=all_headers, data=data) as response:
                status, text = response.status, await response.text()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise _Transient(type(exc).__name__) from None
        if status >= 500 or status == 429:  # throttled: retried like a 5xx
            raise _Transient(f"HTTP {status}")
        if status == 404:
            raise _Moved()
        if status in (401, 403):
            raise IntuneAuthError(f"{_host(url)} refused the gateway's token (HTTP {status}): "
                                  "check the app registration's API permissions")
        if not 200 <= status < 300:
            raise IntuneUnavailable(f"{_host(url)} answered HTTP {status}")
        return parse_answer(text, _host(url))

    # -- tokens ------------------------------------------------------------------------------

    async def _application(self) -> Any:
        """msal's confidential client; building it fetches the authority's OIDC document (blocking)."""
        async with self._app_lock:
            if self._app is None:
                conn = self._conn
                verify: str | bool = str(conn.ca_file) if conn.ca_file is not None else True
                authority = f"{conn.authority_url.rstrip('/')}/{conn.tenant}"
                http = _PinnedSession(verify, conn.timeout)
                try:
                    self._app = await asyncio.to_thread(
                        msal.ConfidentialClientApplication, conn.client_id, client_credential=conn.credential(),
                        authority=authority, instance_discovery=False, http_client=http)
                except OSError as exc:
                    http.close()
                    raise _Transient(f"authority: {type(exc).__name__}") from None
                except ValueError:
                    http.close()
                    raise IntuneAuthError(f"{_host(authority)} has no OpenID configuration for tenant "
                                          f"{conn.tenant!r}") from None
            return self._app

    async def _token(self, scope: str) -> str:
        app = await self._application()
        try:
            result = await asyncio.to_thread(app.acquire_token_for_client, scopes=[scope])
        except (OSError, ValueError, RuntimeError) as exc:
            raise _Transient(f"token endpoint: {type(exc).__name__}") from None
        if not isinstance(result, dict):
            raise _Transient("token endpoint: no answer")
        token = result.get("access_token")
        if isinstance(token, str) and token:
            return token
        error = str(result.get("error") or "unknown")
        description = str(result.get("error_description") or "").split("\r\n")[0].split("\n")[0]
        if error in _TRANSIENT_TOKEN_ERRORS:
            raise _Transient(f"token endpoint: {error}")
        raise IntuneAuthError(self._scrub(f"Entra ID refused the gateway's client credentials for {scope} "
                                          f"({error}): {description}"))

    def _scrub(self, text: str) -> str:
        secret = self._conn.client_secret
        return text.replace(secret, "<secret>") if secret else text  # a key's PEM is never in an answer

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            context = ssl.create_default_context()
            if self._conn.ca_file is not None:
                context.load_verify_locations(cafile=str(self._conn.ca_file))
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context),
                timeout=aiohttp.ClientTimeout(total=self._conn.timeout))
        return self._session

    @staticmethod
    def _log_outcome(service: str, action: str, activity: str, outcome: str) -> None:
        log.info("intune %s %s activity %s: %s", service, action, activity, outcome)


class _PinnedSession(requests.Session):
    """msal's HTTP client, with trust and timeout set on every request: requests lets
    REQUESTS_CA_BUNDLE override a session-wide ``verify`` (psf/requests#3829), which would drop ca_file."""

    def __init__(self, verify: str | bool, timeout: float) -> None:
        super().__init__()
        self._pinned_verify = verify
        self._pinned_timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["verify"] = self._pinned_verify
        kwargs.setdefault("timeout", self._pinned_timeout)
        return super().request(*args, **kwargs)


# --- parsing what Entra, Graph and Intune answer (fuzz target intune-answers) -----------------


def parse_answer(text: str, host: str) -> dict[str, Any]:
    """A JSON object, or IntuneUnavailable (never a JSONDecodeError or RecursionError)."""
    try:
        answer = json.loads(text)
    except (ValueError, RecursionError):
        raise IntuneUnavailable(f"{host} answered with something other than JSON") from None
    if not isinstance(answer, dict):
        raise IntuneUnavailable(f"{host} answered with a JSON {type(answer).__name__}")
    return answer


def parse_discovery(answer: dict[str, Any]) -> dict[str, str]:
    """Graph's endpoints of Intune's service principal, by provider name (lower case)."""
    values = answer.get("value")
    if not isinstance(values, list):
        raise IntuneUnavailable("Graph's service discovery answer has no 'value'")
    found: dict[str, str] = {}
    for item in values:
        if isinstance(item, dict):
            name = item.get("providerName") or item.get("serviceName")
            uri = item.get("uri")
            if isinstance(name, str) and isinstance(uri, str):
                found[name.lower()] = uri
    return found


def parse_revocations(answer: dict[str, Any]) -> list[RevocationRequest]:
    """The revocation requests of a downloadRevocationRequests answer."""
    items = answer.get("value")
    if not isinstance(items, list):
        raise IntuneUnavailable("Intune's revocation list has no 'value'")
    out = []
    for item in items:
        if not isinstance(item, dict) or not all(isinstance(item.get(k), (str, int)) and not isinstance(
                item.get(k), bool) for k in ("requestContext", "serialNumber")):
            raise IntuneUnavailable("Intune sent a malformed revocation request")
        issuer, ca_configuration = item.get("issuerName"), item.get("caConfiguration")
        out.append(RevocationRequest(request_context=str(item["requestContext"]),
                                     serial_number=str(item["serialNumber"]),
                                     issuer_name=issuer if isinstance(issuer, str) else "",
                                     ca_configuration=ca_configuration if isinstance(ca_configuration, str) else None))
    return out


def _b64(der: bytes) -> str:
    return base64.b64encode(der).decode("ascii")


def _host(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0]
