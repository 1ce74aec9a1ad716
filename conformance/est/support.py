"""Shared pieces of the EST client suites: shell commands, scenario metadata."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from tests.est.helpers import ClientCredential, EstServer, core, pem


@dataclass
class Shell:
    returncode: int
    stdout: str
    stderr: str


async def sh(command: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> Shell:
    """Run a shell pipeline (bash, pipefail) without blocking the gateway's event loop."""
    import os

    proc = await asyncio.create_subprocess_exec(
        "bash", "-o", "pipefail", "-c", command, cwd=cwd, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return Shell(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


async def label_meta(est: EstServer, label: str, users: dict[str, str]) -> dict[str, Any]:
    """What a replay needs to recreate the label as it was during the recording."""
    rec = await core(est.gw).config(label)
    chain = await (await est.gw.cas.local(rec.ca_id)).chain()
    return {
        "label": label,
        "label_profiles": rec.profiles,
        "label_settings": {k: v for k, v in rec.settings.items() if k != "default"},
        "users": users,
        "ca_chain_pem": "".join(pem(c).decode() for c in chain),
    }


def credential_meta(cred: ClientCredential, kind: str, anchor_pem: str | None = None) -> dict[str, Any]:
    """The TLS client certificate of the run: ``issued`` by the gateway or ``anchored`` (a maker's CA)."""
    return {
        "client_certificate": {
            "kind": kind,
            "certificate_pem": pem(cred.certificate).decode(),
            "key_pem": cred.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode(),
            "anchor_pem": anchor_pem,
        }
    }
