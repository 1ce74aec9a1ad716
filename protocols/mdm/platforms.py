"""The MDM platforms an MDM configuration is made for.

The platform changes nothing in the protocol (every platform speaks the same web
service); it names the configuration's end entities and audit events
(``<platform>:<device>``) and picks the setup notes ``gateway mdm show`` prints.
"""

from __future__ import annotations

from gateway.errors import BadRequest

PLATFORMS: dict[str, str] = {
    "jamf": "Jamf Pro",
    "workspace-one": "VMware Workspace ONE UEM",
    "ivanti": "Ivanti EPMM / Neurons for MDM",
    "maas360": "IBM MaaS360",
}


def check_platform(name: str) -> str:
    if name not in PLATFORMS:
        raise BadRequest(f"platform must be one of {', '.join(PLATFORMS)}")
    return name
