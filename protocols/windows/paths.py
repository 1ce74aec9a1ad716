"""Where the policy (CEP) and enrollment (CES) services live: AD CS's paths and the gateway's.

AD CS installs each service as an IIS application named after its provider and
authentication mode; clients keep those URLs in Group Policy, so a drop-in must answer
them as they are, and IIS matches paths case-insensitively (the MS-XCEP 4.1.1.1 capture
asks for ``/ADPolicyProvider_cep_usernamepassword/service.svc/cep``):

- CEP: ``/ADPolicyProvider_CEP_{Kerberos,UsernamePassword,Certificate}/service.svc/CEP``
  and ``/KeyBasedRenewal_ADPolicyProvider_CEP_Certificate/service.svc/CEP``;
- CES: ``/<CA-name>_CES_{Kerberos,UsernamePassword,Certificate}/service.svc/CES``.

Those name no configuration: they serve the Windows configuration whose settings say
``adcs_paths = true`` (``gateway init`` makes the dev one so); a CES path's CA name is
that configuration's ``ca_name`` setting.

Every configuration is also reachable under its id, as ACME, SCEP and EST put theirs:

- CEP: ``/windows/<config>/cep/{username,certificate,kerberos,keybasedrenewal}``
- CES: ``/windows/<config>/ces/{username,certificate,kerberos}``

API (W2's ces.py mounts CES at these): :data:`AUTH_MODES`, :data:`CLIENT_AUTHENTICATION`,
:func:`cep_path`, :func:`ces_path`, :func:`adcs_cep_path`, :func:`adcs_ces_path`,
:func:`parse_adcs_service` (an AD CS application name to ``(service, auth,
renewal_only, ca_name)``), :data:`PREFIX`, :data:`CONFIG_PATTERN`.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "/windows"
CONFIG_PATTERN = "{config:[a-z0-9_-]{2,18}}"

USERNAME = "username"
CERTIFICATE = "certificate"
KERBEROS = "kerberos"
KEY_BASED_RENEWAL = "keybasedrenewal"
AUTH_MODES = (USERNAME, CERTIFICATE, KERBEROS)

CLIENT_AUTHENTICATION = {"anonymous": 1, KERBEROS: 2, USERNAME: 4, CERTIFICATE: 8}
"""MS-XCEP 3.1.4.1.3.5 ``clientAuthentication`` values, by authentication mode."""

ADCS_MODE_NAMES = {KERBEROS: "Kerberos", USERNAME: "UsernamePassword", CERTIFICATE: "Certificate"}
"""The suffixes AD CS gives its IIS applications, by authentication mode."""

CEP_PROVIDER = "ADPolicyProvider_CEP_"
KBR_PROVIDER = "KeyBasedRenewal_ADPolicyProvider_CEP_"
SERVICE_FILE = "service.svc"


@dataclass(frozen=True)
class AdcsService:
    service: str  # "cep" or "ces"
    auth: str  # one of AUTH_MODES
    renewal_only: bool = False  # the KeyBasedRenewal CEP
    ca_name: str | None = None  # CES only: the <CA-name> of the path, as written


def cep_path(config_id: str, auth: str) -> str:
    return f"{PREFIX}/{config_id}/cep/{auth}"


def ces_path(config_id: str, auth: str) -> str:
    return f"{PREFIX}/{config_id}/ces/{auth}"


def adcs_cep_path(auth: str, *, renewal_only: bool = False) -> str:
    provider = KBR_PROVIDER if renewal_only else CEP_PROVIDER
    return f"/{provider}{ADCS_MODE_NAMES[auth]}/{SERVICE_FILE}/CEP"


def adcs_ces_path(ca_name: str, auth: str) -> str:
    return f"/{ca_name}_CES_{ADCS_MODE_NAMES[auth]}/{SERVICE_FILE}/CES"


_BY_SUFFIX = {name.lower(): mode for mode, name in ADCS_MODE_NAMES.items()}


def parse_adcs_service(application: str, endpoint: str) -> AdcsService | None:
    """``application`` and ``endpoint`` of ``/<application>/service.svc/<endpoint>``, matched
    case-insensitively as IIS does; ``None`` if AD CS would have no such service."""
    app, kind = application.lower(), endpoint.lower()
    if kind == "cep":
        for provider, renewal in ((KBR_PROVIDER, True), (CEP_PROVIDER, False)):
            if app.startswith(provider.lower()):
                auth = _BY_SUFFIX.get(app[len(provider):])
                if auth is None or (renewal and auth != CERTIFICATE):
                    return None
                return AdcsService("cep", auth, renewal_only=renewal)
        return None
    if kind == "ces":
        head, sep, suffix = application.rpartition("_")
        auth = _BY_SUFFIX.get(suffix.lower())
        if not sep or auth is None or not head.lower().endswith("_ces") or len(head) <= 4:
            return None
        return AdcsService("ces", auth, ca_name=head[:-4])
    return None
