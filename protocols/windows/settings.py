"""A Windows configuration's settings (``ProtocolConfigRecord.settings``), validated.

The core's admin API merges settings without knowing this protocol, so they are checked
here each time a configuration is used, with messages that name the key.

=====================  =============================  =========================================
key                    default                        meaning
=====================  =============================  =========================================
``policy_id``          a UUID from the config id      MS-XCEP ``policyID`` (what Windows keys
                                                      its policy cache by)
``friendly_name``      ``<config> enrollment policy`` ``policyFriendlyName``
``next_update_hours``  ``8``                          ``nextUpdateHours`` (AD CS's default)
``ca_name``            the configuration's CA id      ``<CA-name>`` in ``<CA-name>_CES_*`` paths
``adcs_paths``         ``false``                      serve this configuration on AD CS's paths
``auth``               ``[username, certificate]``    CES modes advertised in ``cAURI``s
``templates``          (required)                     list of templates, see below
``mdm_discovery``      ``false``                      serve MDM discovery (MS-MDE2) at
                                                      ``/EnrollmentServer/Discovery.svc``
``mdm_template``       first ``machine`` template     template MDM enrollments issue under
``mdm_server_url``     none                           OMA-DM server (``https://``) put into the
                                                      provisioning document's w7 APPLICATION
``mdm_provider_id``    the configuration id           its ``PROVIDER-ID``
=====================  =============================  =========================================

``directory`` (default: none): Active Directory as the source of templates, permissions and
names (:mod:`.directory.settings` lists its keys); the ``templates`` list may then be empty.

``kerberos`` (default: none, the Kerberos endpoints answer a fault): a table
``{keytab = "/abs/http.keytab", service = "HTTP@gateway.corp.example", realms = ["CORP.EXAMPLE"],
rcache = "file2:/var/lib/gateway/krb5.rcache2"}`` (only ``keytab`` required) that turns on Negotiate
on the Kerberos CEP and CES endpoints (:mod:`.negotiate`).

``accept_sha1_csr_signatures`` (default ``true``): accept requests signed with SHA-1 RSA
(``sha1WithRSAEncryption``, OIW ``sha1WithRSASignature``), as Windows certenroll and the
MDM client sign them and AD CS accepts them; the signature only proves possession of the
key (DIVERGENCES.md says why that is acceptable). ``false`` refuses them as the other
protocols do.

A template (one MS-XCEP ``policy``) names a gateway profile and adds what Windows reads:

=======================  ==============  ==================================================
key                      default         meaning
=======================  ==============  ==================================================
``name``                 (required)      ``commonName``: the template name requests carry
``display_name``         ``name``        the template OID's ``defaultName``
``profile``              (required)      gateway profile it issues under (configuration's)
``oid``                  (required)      template OID (``1.3.6.1.4.1.311.21.8....``)
``major_revision``       ``100``         ``revision/majorRevision`` (positive)
``minor_revision``       ``0``           ``revision/minorRevision``
``schema``               ``2``           ``policySchema`` 1, 2 or 3 (3: CNG, hash OID)
``machine``              ``false``       a computer template (``generalFlags`` 0x40)
``autoenroll``           ``true``        autoenrollment allowed (flags + permission)
``subject``              ``request``     ``request``: the client supplies subject and SAN;
                                         ``directory``: the gateway builds them
``exportable``           ``false``       private key exportable (``privateKeyFlags`` 0x10)
``renewal_period``       ``P42D``        ``renewalPeriodSeconds`` (AD CS: six weeks)
``key_based_renewal``    ``true``        renewal signed by the old key, served by the
                                         KeyBasedRenewal CEP (``enrollmentFlags``)
``hash``                 ``sha256``      schema 3 only: ``hashAlgorithmOIDReference``
``providers``            by schema/key   ``cryptoProviders``
``enroll``               ``["*"]``       callers who may enroll: user names, ``*`` for all
``autoenroll_for``       ``["*"]``       callers granted autoenrollment (subset of enroll)
``superseded``           ``[]``          ``supersededPolicies`` (template names)
=======================  ==============  ==================================================
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from gateway.config import parse_duration
from gateway.door import CsrPolicy, Door, ProtocolConfigRecord
from gateway.errors import ConfigError, NotFound

from .directory.settings import DirectorySettings, parse_directory
from .negotiate import KerberosSettings, parse_kerberos
from .paths import AUTH_MODES, CERTIFICATE, USERNAME

OID_RE = re.compile(r"^[0-2](\.(0|[1-9][0-9]{0,9}))+$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
CA_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$")
HASHES = ("sha256", "sha384", "sha512")
SUBJECT_SOURCES = ("request", "directory")
UINT32 = 0xFFFFFFFF
URL_RE = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?$")


@dataclass(frozen=True)
class DirectoryFlags:
    """What an Active Directory template (``pKICertificateTemplate``, MS-CRTD) says itself,
    carried to clients unchanged; the security descriptor decides who may enroll."""

    flags: int
    enrollment_flag: int
    name_flag: int
    private_key_flag: int
    minimal_key_size: int
    key_spec: int
    security_descriptor: bytes = field(repr=False)


@dataclass(frozen=True)
class TemplateSettings:
    name: str
    display_name: str
    profile: str
    oid: str
    major_revision: int = 100
    minor_revision: int = 0
    schema: int = 2
    machine: bool = False
    autoenroll: bool = True
    subject: str = "request"
    exportable: bool = False
    renewal_period: dt.timedelta = dt.timedelta(days=42)
    key_based_renewal: bool = True
    hash: str = "sha256"
    providers: tuple[str, ...] | None = None
    enroll: tuple[str, ...] = ("*",)
    autoenroll_for: tuple[str, ...] = ("*",)
    superseded: tuple[str, ...] = ()
    directory: DirectoryFlags | None = None
    """Set for a template read from Active Directory (never from the settings table)."""

    def may_enroll(self, caller: str) -> bool:
        return "*" in self.enroll or caller in self.enroll

    def may_autoenroll(self, caller: str) -> bool:
        return self.autoenroll and self.may_enroll(caller) and (
            "*" in self.autoenroll_for or caller in self.autoenroll_for)


@dataclass(frozen=True)
class WindowsSettings:
    policy_id: str
    friendly_name: str
    next_update_hours: int
    ca_name: str
    adcs_paths: bool
    auth: tuple[str, ...]
    templates: tuple[TemplateSettings, ...]
    mdm_discovery: bool = False
    mdm_template: str | None = None
    mdm_server_url: str | None = None
    mdm_provider_id: str | None = None
    accept_sha1_csr_signatures: bool = True
    kerberos: KerberosSettings | None = None
    directory: DirectorySettings | None = None

    @property
    def csr_policy(self) -> CsrPolicy:
        """What the core accepts in this configuration's requests: SHA-1 as configured,
        and always the MDM client's PrintableStrings (see DIVERGENCES.md)."""
        return CsrPolicy(sha1_signatures=self.accept_sha1_csr_signatures, legacy_strings=True)

    @classmethod
    def of(cls, rec: ProtocolConfigRecord) -> WindowsSettings:
        return parse_settings(rec.settings, rec.id, rec.ca_id, rec.profiles)

    def template(self, name: str) -> TemplateSettings | None:
        """By ``commonName``, case-insensitively (Windows compares template names so)."""
        return next((t for t in self.templates if t.name.lower() == name.lower()), None)

    def template_by_oid(self, oid: str) -> TemplateSettings | None:
        return next((t for t in self.templates if t.oid == oid), None)

    def mdm_template_settings(self) -> TemplateSettings:
        """What an MDM enrollment issues under (its CSR names no template)."""
        if self.mdm_template is not None:
            found = self.template(self.mdm_template)
            assert found is not None  # checked by parse_settings
            return found
        return next((t for t in self.templates if t.machine), self.templates[0])


def default_policy_id(config_id: str) -> str:
    """A stable policy id, in the braces AD CS writes its GUIDs in."""
    return "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:gateway:windows:{config_id}")).upper() + "}"


def _fail(config_id: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"windows configuration {config_id!r}: {key}: {message}")


def _str(raw: dict[str, Any], key: str, default: str | None, where: str, pattern: re.Pattern[str] | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key}: must be a non-empty string")
    if pattern is not None and not pattern.match(value):
        raise ConfigError(f"{where}: {key}: {value!r} is not allowed")
    return value


def _bool(raw: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key}: must be true or false")
    return value


def _int(raw: dict[str, Any], key: str, default: int, where: str, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}: {key}: must be an integer from {low} to {high}")
    return value


def _names(raw: dict[str, Any], key: str, default: tuple[str, ...], where: str) -> tuple[str, ...]:
    value = raw.get(key, list(default))
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: {key}: must be a list of strings")
    return tuple(value)


def parse_template(raw: Any, where: str, profiles: list[str]) -> TemplateSettings:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    known = set(TemplateSettings.__dataclass_fields__) - {"directory"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(unknown)}")
    name = _str(raw, "name", None, where, NAME_RE)
    where = f"{where} ({name})"
    profile = _str(raw, "profile", None, where)
    if profile not in profiles:
        raise ConfigError(f"{where}: profile: {profile!r} is not one of the configuration's profiles")
    schema = _int(raw, "schema", 2, where, 1, 3)
    subject = _str(raw, "subject", "request", where)
    if subject not in SUBJECT_SOURCES:
        raise ConfigError(f"{where}: subject: must be one of {', '.join(SUBJECT_SOURCES)}")
    hash_name = _str(raw, "hash", "sha256", where)
    if hash_name not in HASHES:
        raise ConfigError(f"{where}: hash: must be one of {', '.join(HASHES)}")
    renewal = parse_duration(_str(raw, "renewal_period", "P42D", where), f"{where}: renewal_period")
    providers = raw.get("providers")
    if providers is not None:
        providers = _names(raw, "providers", (), where)
        if not providers:
            raise ConfigError(f"{where}: providers: must not be empty (leave it out for the defaults)")
    return TemplateSettings(
        name=name, display_name=_str(raw, "display_name", name, where), profile=profile,
        oid=_str(raw, "oid", None, where, OID_RE),
        major_revision=_int(raw, "major_revision", 100, where, 1, UINT32),
        minor_revision=_int(raw, "minor_revision", 0, where, 0, UINT32),
        schema=schema, machine=_bool(raw, "machine", False, where),
        autoenroll=_bool(raw, "autoenroll", True, where), subject=subject,
        exportable=_bool(raw, "exportable", False, where), renewal_period=renewal,
        key_based_renewal=_bool(raw, "key_based_renewal", True, where), hash=hash_name,
        providers=providers, enroll=_names(raw, "enroll", ("*",), where),
        autoenroll_for=_names(raw, "autoenroll_for", ("*",), where),
        superseded=_names(raw, "superseded", (), where),
    )


def parse_settings(raw: dict[str, Any], config_id: str, ca_id: str, profiles: list[str]) -> WindowsSettings:
    where = f"windows configuration {config_id!r}"
    auth = _names(raw, "auth", (USERNAME, CERTIFICATE), where)
    bad = sorted(set(auth) - set(AUTH_MODES))
    if bad or not auth:
        raise _fail(config_id, "auth", f"must be a non-empty list of {', '.join(AUTH_MODES)}")
    directory = parse_directory(raw.get("directory"), where, profiles)
    templates_raw = raw.get("templates", [] if directory is not None else None)
    if not isinstance(templates_raw, list) or (not templates_raw and directory is None):
        raise _fail(config_id, "templates", "must be a non-empty list of templates (or set a directory)")
    templates = tuple(parse_template(t, f"{where}: templates[{i}]", profiles) for i, t in enumerate(templates_raw))
    for attr in ("name", "oid"):
        values = [getattr(t, attr).lower() for t in templates]
        if len(set(values)) != len(values):
            raise _fail(config_id, "templates", f"two templates share a {attr}")
    return WindowsSettings(
        policy_id=_str(raw, "policy_id", default_policy_id(config_id), where),
        friendly_name=_str(raw, "friendly_name", f"{config_id} enrollment policy", where),
        next_update_hours=_int(raw, "next_update_hours", 8, where, 1, 24 * 365),
        ca_name=_str(raw, "ca_name", ca_id, where, CA_NAME_RE),
        adcs_paths=_bool(raw, "adcs_paths", False, where),
        auth=tuple(dict.fromkeys(auth)),
        templates=templates,
        accept_sha1_csr_signatures=_bool(raw, "accept_sha1_csr_signatures", True, where),
        kerberos=parse_kerberos(raw.get("kerberos"), where),
        directory=directory,
        **_mdm_settings(raw, config_id, templates, where),
    )


def _mdm_settings(raw: dict[str, Any], config_id: str, templates: tuple[TemplateSettings, ...],
                  where: str) -> dict[str, Any]:
    """The MS-MDE2 keys (see the table above)."""
    template = raw.get("mdm_template")
    if raw.get("mdm_discovery") and not templates:
        raise _fail(config_id, "mdm_discovery", "needs a template in the templates list (MDM enrollment "
                    "does not read the directory)")
    if template is not None:
        if not isinstance(template, str) or not any(t.name.lower() == template.lower() for t in templates):
            raise _fail(config_id, "mdm_template", "must name one of the configuration's templates")
    url = raw.get("mdm_server_url")
    if url is not None and (not isinstance(url, str) or not URL_RE.match(url)):
        raise _fail(config_id, "mdm_server_url", "must be an https:// URL")
    provider = raw.get("mdm_provider_id")
    if provider is not None:
        provider = _str(raw, "mdm_provider_id", None, where, NAME_RE)
    return {"mdm_discovery": _bool(raw, "mdm_discovery", False, where), "mdm_template": template,
            "mdm_server_url": url, "mdm_provider_id": provider}


async def adcs_configuration(door: Door, *, ca_name: str | None = None) -> tuple[ProtocolConfigRecord, WindowsSettings]:
    """The configuration AD CS's paths (which name none) serve: the oldest enabled one with
    ``adcs_paths = true`` (and, for a CES path, whose ``ca_name`` matches, case-insensitively
    as IIS matches paths). NotFound when there is none."""
    for rec in sorted(await door.configurations(enabled_only=True), key=lambda r: (r.created_at, r.id)):
        try:
            settings = WindowsSettings.of(rec)
        except ConfigError:
            continue  # a broken configuration answers on its own paths, with the error
        if settings.adcs_paths and (ca_name is None or settings.ca_name.lower() == ca_name.lower()):
            return rec, settings
    raise NotFound("no Windows configuration serves these AD CS paths")
