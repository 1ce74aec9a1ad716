"""The AD CS connector's answer parser on what AD CS itself sends (Microsoft's MS-WSTEP
examples in ../shared/captures/xcep-wstep/ms-wstep): an issued RSTR collection becomes
the certificate with its RequestID and disposition, a server fault an Unavailable the
core maps to a "try later"; malformed answers are refused with one clear error."""

from __future__ import annotations

import pytest

from gateway.ca.upstream.wstep import parse_answer, refusal
from gateway.errors import Unavailable
from tests.windows.helpers import capture


def test_an_issued_answer_from_ad_cs() -> None:
    answer = parse_answer(capture("xcep-wstep", "ms-wstep", "4.1.1.2-RSTRC-Issued-response.xml").read_bytes())
    assert answer.outcome == "issued" and answer.request_id == "61"
    assert answer.disposition is not None and "Issued" in answer.disposition
    assert answer.certificate is not None
    assert "abby" in answer.certificate.subject.rfc4514_string().lower()


def test_a_server_fault_from_ad_cs() -> None:
    answer = parse_answer(capture("xcep-wstep", "ms-wstep", "4.1.4.2-server-fault-response.xml").read_bytes())
    assert answer.outcome == "fault" and answer.receiver
    assert isinstance(refusal("corp", answer), Unavailable)


@pytest.mark.parametrize("body", [b"", b"not xml", b"<a/>", b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e 'x'>]><x>&e;</x>"])
def test_malformed_answers_are_refused(body: bytes) -> None:
    with pytest.raises(Unavailable):
        parse_answer(body)
