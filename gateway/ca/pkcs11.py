"""CA keys in a PKCS#11 token (an HSM, SoftHSM2): generated there, used there, never exported.

A CA of backend kind ``pkcs11`` is an ordinary root or issuing CA whose private key is
an object on a token: the gateway keeps its certificate and chain, the key's location
(module, token, label, id) and where the PIN comes from, never the key or the PIN.
Certificates, CRLs and OCSP responses are signed by the token through
:mod:`gateway.ca.signer` (the TBS bytes are built here, the token signs them, the signature
is checked under the CA's public key). ``ocsp_signer`` ``delegated`` instead has the token
sign a delegated responder certificate (RFC 6960 4.2.2.2) whose software key signs the
responses, for a token too slow to be asked once per OCSP request.

The location is an RFC 7512 URI, e.g.
``pkcs11:token=gateway;object=hsm-root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:GATEWAY_PKCS11_PIN``.
``pin-source`` is ``env:NAME`` or a file (``file:/path`` or a plain path); ``pin-value``
is refused so that no PIN is ever written into the store.

PKCS#11 is process-global (C_Initialize once per module, login state shared by every
session of a process), so libraries and logged-in sessions are kept per process here,
one per (module, token), each with a lock: a session is not safe for concurrent use.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPublicKeyTypes,
    CertificatePublicKeyTypes,
)

from ..errors import BadRequest, Unavailable
from ..keys import SignatureHash
from ..store.records import CARecord
from .kinds import BackendStartupError
from .local import LocalCA, LocalCASettings
from .signer import IssuerKey, TokenKey

if TYPE_CHECKING:
    from .hierarchy import CAHierarchy

KIND = "pkcs11"
DEFAULT_PIN_SOURCE = "env:GATEWAY_PKCS11_PIN"
_CURVES = {"EC-P256": "secp256r1", "EC-P384": "secp384r1", "EC-P521": "secp521r1"}
_RSA_SIZES = {"RSA-2048": 2048, "RSA-3072": 3072, "RSA-4096": 4096}
OCSP_SIGNERS = ("ca-key", "delegated")


@dataclass(frozen=True)
class Pkcs11Location:
    """Where a CA key lives and how to log in; what the CA record keeps (no PIN)."""

    module: str
    key_label: str
    token_label: str | None = None
    slot_id: int | None = None
    key_id: str | None = None  # hex CKA_ID
    pin_source: str = DEFAULT_PIN_SOURCE
    ocsp_signer: str = "ca-key"
    """Who signs OCSP responses: the token key itself (``ca-key``) or a ``delegated`` responder."""

    @classmethod
    def from_uri(cls, uri: str, *, default_label: str, module: str | None = None,
                 pin_source: str | None = None, ocsp_signer: str = "ca-key") -> "Pkcs11Location":
        """Parse an RFC 7512 ``pkcs11:`` URI; ``module``/``pin_source`` fill what it leaves out."""
        if not uri.startswith("pkcs11:"):
            raise BadRequest("a PKCS#11 URI starts with 'pkcs11:' (RFC 7512)")
        path, _, query = uri[len("pkcs11:"):].partition("?")
        attrs: dict[str, str] = {}
        for part in [p for p in path.split(";") if p] + [q for q in query.split("&") if q]:
            name, eq, value = part.partition("=")
            if not eq:
                raise BadRequest(f"PKCS#11 URI attribute {name!r} has no value")
            attrs[name] = urllib.parse.unquote(value)
        if "pin-value" in attrs:
            raise BadRequest("the PKCS#11 URI carries a pin-value; give pin-source=env:NAME or a PIN file "
                             "instead, so that the PIN is never stored")
        slot = attrs.get("slot-id")
        if slot is not None and not slot.isdigit():
            raise BadRequest(f"PKCS#11 slot-id {slot!r} is not a number")
        if ocsp_signer not in OCSP_SIGNERS:
            raise BadRequest(f"the OCSP signer of a token CA is one of {list(OCSP_SIGNERS)}")
        if "token" not in attrs and slot is None:
            raise BadRequest("the PKCS#11 URI names no token (token=LABEL or slot-id=N)")
        key_id = attrs.get("id")
        found_module = attrs.get("module-path") or module or os.environ.get("GATEWAY_PKCS11_MODULE")
        if not found_module:
            raise BadRequest("no PKCS#11 module: give module-path= in the URI or --pkcs11-module")
        return cls(
            module=found_module, key_label=attrs.get("object") or default_label,
            token_label=attrs.get("token"), slot_id=int(slot) if slot is not None else None,
            key_id=key_id.encode("latin-1").hex() if key_id else None,
            pin_source=attrs.get("pin-source") or pin_source or DEFAULT_PIN_SOURCE, ocsp_signer=ocsp_signer,
        )

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> "Pkcs11Location":
        try:
            return cls(module=str(settings["module"]), key_label=str(settings["key_label"]),
                       token_label=settings.get("token_label"), slot_id=settings.get("slot_id"),
                       key_id=settings.get("key_id"), pin_source=str(settings.get("pin_source", DEFAULT_PIN_SOURCE)),
                       ocsp_signer=str(settings.get("ocsp_signer", "ca-key")))
        except KeyError as exc:
            raise BackendStartupError(f"PKCS#11 settings lack {exc.args[0]!r}") from None

    def settings(self) -> dict[str, Any]:
        return {"module": self.module, "key_label": self.key_label, "token_label": self.token_label,
                "slot_id": self.slot_id, "key_id": self.key_id, "pin_source": self.pin_source,
                "ocsp_signer": self.ocsp_signer}

    @property
    def token_name(self) -> str:
        return f"token {self.token_label!r}" if self.token_label else f"slot {self.slot_id}"

    def uri(self) -> str:
        """The location as an RFC 7512 URI (for display; no PIN)."""
        path = [f"token={urllib.parse.quote(self.token_label)}"] if self.token_label else []
        path.append(f"object={urllib.parse.quote(self.key_label)}")
        if self.key_id:
            path.append("id=" + "".join(f"%{b:02x}" for b in bytes.fromhex(self.key_id)))
        if self.slot_id is not None:
            path.append(f"slot-id={self.slot_id}")
        query = f"module-path={urllib.parse.quote(self.module)}&pin-source={urllib.parse.quote(self.pin_source)}"
        return "pkcs11:" + ";".join(path) + "?" + query

    def read_pin(self) -> str:
        """The PIN from its source; a missing source is a start-up error that names it."""
        source = self.pin_source
        if source.startswith("env:"):
            value = os.environ.get(source[4:])
            if not value:
                raise BackendStartupError(f"the PIN for {self.token_name} comes from the environment variable "
                                          f"{source[4:]}, which is not set")
            return value
        path = Path(source[5:] if source.startswith("file:") else source)
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise BackendStartupError(f"the PIN file {path} for {self.token_name} cannot be read: "
                                      f"{exc.strerror}") from None


class _Session:
    """One logged-in session on one token, serialised by a lock."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.lock = threading.Lock()


_LIBS: dict[str, Any] = {}
_SESSIONS: dict[tuple[str, str | None, int | None], _Session] = {}
_REFUSED: dict[tuple[str, str | None, int | None], tuple[bytes, str]] = {}
"""The last PIN a token refused (its digest) and why: the same PIN is not tried again, so
several CAs on one token cost one failed login, not one each, against its retry counter."""
_GLOBAL = threading.Lock()


def _library(module: str) -> Any:
    import pkcs11

    with _GLOBAL:
        lib = _LIBS.get(module)
        if lib is None:
            if not Path(module).is_file():
                raise BackendStartupError(f"PKCS#11 module {module} does not exist")
            try:
                lib = _LIBS[module] = pkcs11.lib(module)
            except (OSError, RuntimeError) as exc:
                raise BackendStartupError(f"PKCS#11 module {module} cannot be loaded: {exc}") from None
        return lib


def _token(location: Pkcs11Location) -> Any:
    import pkcs11.exceptions as p11e

    lib = _library(location.module)
    try:
        if location.token_label is not None:
            return lib.get_token(token_label=location.token_label)
        for slot in lib.get_slots(token_present=True):
            if slot.slot_id == location.slot_id:
                return slot.get_token()
    except p11e.NoSuchToken:
        pass
    except p11e.MultipleTokensReturned:
        raise BackendStartupError(f"more than one token is labelled {location.token_label!r} in "
                                  f"{location.module}; give slot-id") from None
    except p11e.PKCS11Error as exc:
        raise BackendStartupError(f"{location.token_name}: {type(exc).__name__}") from None
    raise BackendStartupError(f"no {location.token_name} in PKCS#11 module {location.module}")


def _session(location: Pkcs11Location) -> _Session:
    """The process's logged-in session on the location's token (opened on first use)."""
    import pkcs11.exceptions as p11e

    key = (location.module, location.token_label, location.slot_id)
    with _GLOBAL:
        found = _SESSIONS.get(key)
    if found is not None:
        return found
    token = _token(location)
    pin = location.read_pin()
    digest = hashlib.sha256(pin.encode()).digest()
    refused = _REFUSED.get(key)
    if refused is not None and hmac.compare_digest(refused[0], digest):
        raise BackendStartupError(refused[1])
    try:
        session = token.open(user_pin=pin, rw=True)
    except (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange):
        why = f"wrong PIN for {location.token_name} (from {location.pin_source})"
        _REFUSED[key] = (digest, why)
        raise BackendStartupError(why) from None
    except p11e.PinLocked:
        raise BackendStartupError(f"the user PIN of {location.token_name} is locked") from None
    except p11e.UserAlreadyLoggedIn:
        session = token.open(rw=True)  # another session of this process logged in already
    except p11e.PKCS11Error as exc:
        raise BackendStartupError(f"cannot log in to {location.token_name}: {type(exc).__name__}") from None
    with _GLOBAL:
        return _SESSIONS.setdefault(key, _Session(session))


def _forget(location: Pkcs11Location) -> None:
    with _GLOBAL:
        _SESSIONS.pop((location.module, location.token_label, location.slot_id), None)


class Pkcs11Key(TokenKey):
    """A private key object on a token; the public half comes from the token too."""

    def __init__(self, location: Pkcs11Location, private: Any, public: CertificateIssuerPublicKeyTypes) -> None:
        self.location = location
        self._private = private
        self._public = public

    @classmethod
    def find(cls, location: Pkcs11Location) -> "Pkcs11Key":
        import pkcs11.exceptions as p11e
        from pkcs11 import ObjectClass

        holder = _session(location)
        query: dict[str, Any] = {"label": location.key_label}
        if location.key_id:
            query["id"] = bytes.fromhex(location.key_id)
        with holder.lock:
            try:
                private = holder.session.get_key(object_class=ObjectClass.PRIVATE_KEY, **query)
                public = holder.session.get_key(object_class=ObjectClass.PUBLIC_KEY, **query)
            except p11e.NoSuchKey:
                raise BackendStartupError(f"no key pair labelled {location.key_label!r} on "
                                          f"{location.token_name}") from None
            except p11e.MultipleObjectsReturned:
                raise BackendStartupError(f"more than one key is labelled {location.key_label!r} on "
                                          f"{location.token_name}; give id=") from None
            return cls(location, private, _public_key(public))

    @classmethod
    def generate(cls, location: Pkcs11Location, algorithm: str) -> "Pkcs11Key":
        """A new key pair on the token: sensitive, never extractable, for signing only."""
        import pkcs11.exceptions as p11e
        from pkcs11 import Attribute, KeyType, ObjectClass
        from pkcs11.util.ec import encode_named_curve_parameters

        holder = _session(location)
        key_id = bytes.fromhex(location.key_id) if location.key_id else secrets.token_bytes(8)
        private_template = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.SIGN: True,
                            Attribute.DECRYPT: False, Attribute.UNWRAP: False, Attribute.DERIVE: False}
        public_template = {Attribute.VERIFY: True, Attribute.ENCRYPT: False, Attribute.WRAP: False}
        with holder.lock:
            try:
                holder.session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=location.key_label)
            except p11e.NoSuchKey:
                pass
            except p11e.MultipleObjectsReturned:
                raise BadRequest(f"{location.token_name} already has keys labelled {location.key_label!r}") from None
            else:
                raise BadRequest(f"{location.token_name} already has a key labelled {location.key_label!r}; "
                                 "choose another object= label")
            try:
                if algorithm in _RSA_SIZES:
                    public, private = holder.session.generate_keypair(
                        KeyType.RSA, _RSA_SIZES[algorithm], label=location.key_label, id=key_id, store=True,
                        public_template=public_template, private_template=private_template)
                elif algorithm in _CURVES:
                    params = holder.session.create_domain_parameters(
                        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(_CURVES[algorithm])},
                        local=True)
                    public, private = params.generate_keypair(
                        label=location.key_label, id=key_id, store=True,
                        public_template=public_template, private_template=private_template)
                else:
                    raise BadRequest(f"a token key is one of {sorted(_RSA_SIZES) + sorted(_CURVES)}, "
                                     f"not {algorithm!r}")
            except p11e.PKCS11Error as exc:
                raise BadRequest(f"{location.token_name} could not generate a {algorithm} key: "
                                 f"{type(exc).__name__}") from None
        placed = Pkcs11Location(**{**location.settings(), "key_id": key_id.hex()})
        return cls(placed, private, _public_key(public))

    def public_key(self) -> CertificateIssuerPublicKeyTypes:
        return self._public

    def sign(self, data: bytes, algorithm: SignatureHash) -> bytes:
        import pkcs11.exceptions as p11e
        from pkcs11 import Mechanism
        from pkcs11.util.ec import encode_ecdsa_signature

        holder = _session(self.location)
        try:
            if isinstance(self._public, rsa.RSAPublicKey):
                mechanism = {"sha256": Mechanism.SHA256_RSA_PKCS, "sha384": Mechanism.SHA384_RSA_PKCS,
                             "sha512": Mechanism.SHA512_RSA_PKCS}[algorithm.name]
                with holder.lock:
                    return bytes(self._private.sign(data, mechanism=mechanism))
            digest = hashes.Hash(algorithm)
            digest.update(data)  # CKM_ECDSA signs a digest: hash here, sign there
            with holder.lock:
                raw = self._private.sign(digest.finalize(), mechanism=Mechanism.ECDSA)
        except p11e.PKCS11Error as exc:
            # A token pulled or a session lost: the next request logs in again.
            _forget(self.location)
            raise Unavailable(f"the token of this CA ({self.location.token_name}) refused to sign: "
                              f"{type(exc).__name__}") from None
        return bytes(encode_ecdsa_signature(raw))


def _public_key(obj: Any) -> CertificateIssuerPublicKeyTypes:
    from pkcs11 import Attribute, KeyType
    from pkcs11.util.ec import encode_ec_public_key

    if obj.key_type == KeyType.RSA:
        n = int.from_bytes(obj[Attribute.MODULUS], "big")
        e = int.from_bytes(obj[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    key = serialization.load_der_public_key(bytes(encode_ec_public_key(obj)))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise BackendStartupError("the token returned a public key that is neither RSA nor EC")
    return key


def _spki(key: CertificateIssuerPublicKeyTypes | CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class Pkcs11CA(LocalCA):
    """A root or issuing CA like any local one, except that its key is on a token."""

    kind = KIND

    def _load_key(self, record: CARecord, settings: LocalCASettings) -> IssuerKey:
        location = Pkcs11Location.from_settings(record.backend_settings)
        key = Pkcs11Key.find(location)
        cert = x509.load_pem_x509_certificate((record.certificate_pem or "").encode())
        if _spki(key.public_key()) != _spki(cert.public_key()):
            raise BackendStartupError(f"CA {record.id}: the key {location.key_label!r} on {location.token_name} "
                                      "is not the key of the CA's certificate")
        return key

    @property
    def location(self) -> Pkcs11Location:
        key = self.private_key
        assert isinstance(key, Pkcs11Key)
        return key.location

    async def ocsp_signer(self, validity: dt.timedelta) -> tuple[x509.Certificate, IssuerKey]:
        """The CA itself (RFC 6960 4.2.2.2: the CA may sign its own responses) with its token
        key, unless the CA was made with a delegated responder."""
        if self.location.ocsp_signer == "delegated":
            return await super().ocsp_signer(validity)
        return self.certificate, self.private_key


def build(record: CARecord, settings: LocalCASettings, hierarchy: "CAHierarchy") -> Pkcs11CA:
    return Pkcs11CA(record, settings, hierarchy)
