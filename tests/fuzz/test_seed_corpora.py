"""Every fuzz target's TestOneInput over its seed corpus, once: the normal suite keeps the
harness working (targets import, seeds load, real client bytes raise no undeclared error).
The seeds come from fixtures/ and ../shared/captures; under CI=true a missing ../shared fails."""

from __future__ import annotations

import pytest

from fuzz.seeds import SHARED_CAPTURES, in_ci
from fuzz.targets import TARGETS, load


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_runs_over_its_seeds(name: str) -> None:
    if in_ci() and not SHARED_CAPTURES.is_dir():
        pytest.fail(f"shared captures missing at {SHARED_CAPTURES}")
    module = load(name)
    seeds = module.seeds()
    assert seeds, f"{name} has no seeds"
    for seed in seeds:
        module.test_one_input(seed)


def test_seeds_include_the_shared_captures() -> None:
    """The SCEP targets reach the Apple capture's envelope with its published test CA key."""
    if not SHARED_CAPTURES.is_dir():
        if in_ci():
            pytest.fail(f"shared captures missing at {SHARED_CAPTURES}")
        pytest.skip("../shared/captures not present")
    from fuzz.targets import scep_envelope

    apple = (SHARED_CAPTURES / "scep/apple-macos-pkcsreq/PKCSReq.der").read_bytes()
    from protocols.scep.message import parse_pki_message
    from protocols.scep.envelope import open_envelope

    opened = open_envelope(parse_pki_message(apple).content, scep_envelope.recipients())
    assert opened.algorithms.content == "tripledes_3key"
