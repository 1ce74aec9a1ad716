"""The session's SoftHSM2 token (see :mod:`conformance.backends.softhsm`)."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from .softhsm import SoftHsm, make_token_dir, module_path


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    module = module_path()
    conf, pin = make_token_dir(tmp_path_factory.mktemp("softhsm"), "gateway-tests")
    hsm = SoftHsm(conf, module, "gateway-tests", pin)
    saved = {name: os.environ.get(name) for name in hsm.env()}
    os.environ.update(hsm.env())  # the in-process gateway and the CLI subprocesses read these
    yield hsm
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
