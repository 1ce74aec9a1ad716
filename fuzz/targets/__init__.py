"""The fuzz targets, by name. Modules are imported lazily (:func:`load`) so that the
worker imports the parsers under atheris' coverage instrumentation."""

from __future__ import annotations

import importlib
from types import ModuleType

TARGETS: dict[str, str] = {
    "acme-jws": "fuzz.targets.acme_jws",
    "csr": "fuzz.targets.csr",
    "scep-message": "fuzz.targets.scep_message",
    "scep-envelope": "fuzz.targets.scep_envelope",
    "est-body": "fuzz.targets.est_body",
    "ocsp": "fuzz.targets.ocsp",
    "admin-inputs": "fuzz.targets.admin_inputs",
    "wstep-token": "fuzz.targets.wstep_token",
    "xcep-getpolicies": "fuzz.targets.xcep_getpolicies",
    "mde2-discover": "fuzz.targets.mde2_discover",
    "intune-answers": "fuzz.targets.intune_answers",
    "ad-security-descriptor": "fuzz.targets.ad_security_descriptor",
    "ad-directory-entries": "fuzz.targets.ad_directory_entries",
    "mdm-soap": "fuzz.targets.mdm_soap",
    "est-upstream-answer": "fuzz.targets.est_upstream_answer",
    "wstep-upstream-answer": "fuzz.targets.wstep_upstream_answer",
}
"""Target name -> module. Each module has ``DESCRIPTION``, ``seeds()`` and
``test_one_input(data)``; the latter swallows the parser's declared client errors
and lets anything else (what the server would answer with a 500) escape."""


def load(name: str) -> ModuleType:
    return importlib.import_module(TARGETS[name])
