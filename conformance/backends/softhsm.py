"""SoftHSM2 (Debian ``softhsm2``) as the PKCS#11 token of the suites.

PKCS#11 is initialised once per process and SoftHSM2 reads its configuration then, so
one token directory serves the whole test session: :func:`session_token` points
``SOFTHSM2_CONF`` at it before any test loads the module, and each test makes keys
under labels of its own. Tests that need another token layout (none, a missing module)
run ``gateway`` as a subprocess with their own environment.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conformance.harness import require_client

MODULE_PATHS = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so")


@dataclass(frozen=True)
class SoftHsm:
    conf: Path
    module: str
    token: str
    pin: str

    def uri(self, label: str) -> str:
        return f"pkcs11:token={self.token};object={label}?module-path={self.module}"

    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf), "GATEWAY_PKCS11_PIN": self.pin}


def module_path() -> str:
    require_client("softhsm2-util", "Debian package softhsm2")
    for path in MODULE_PATHS:
        if Path(path).is_file():
            return path
    raise AssertionError(f"softhsm2-util is installed but libsofthsm2.so is in none of {MODULE_PATHS}")


def make_token_dir(root: Path, label: str | None) -> tuple[Path, str]:
    """A SoftHSM2 configuration over a fresh token directory, with one token when ``label``."""
    tokens = root / "tokens"
    tokens.mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    pin = secrets.token_hex(6)
    if label is not None:
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin,
                        "--so-pin", secrets.token_hex(6)], check=True, capture_output=True,
                       env={**os.environ, "SOFTHSM2_CONF": str(conf)})
    return conf, pin
