"""HTTPS: the lab CA, NTLM with channel binding (Relaxed / Strict), Basic only where enabled and only over TLS."""

from __future__ import annotations

import pytest
import requests
from winrm.exceptions import InvalidCredentialsError

from tests.integration.winlab.conftest import PASSWORDS, Lab

pytestmark = pytest.mark.winlab


def _https(lab: Lab, name: str, **kw: object):
    kw.setdefault("server_cert_validation", "validate")
    kw.setdefault("ca_trust_path", str(lab.fleet.ca_path))
    return lab.session(name, scheme="https", **kw)


def test_ntlm_over_https_validates_against_the_lab_ca(lab: Lab) -> None:
    result = _https(lab, "ALPHA").run_cmd("whoami")
    assert result.std_out == b"alpha\\administrator\r\n"


def test_https_without_the_lab_ca_fails_validation(lab: Lab) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        lab.session("ALPHA", scheme="https", server_cert_validation="validate", ca_trust_path=None).run_cmd("whoami")


def test_strict_cbt_accepts_a_client_that_sends_bindings(lab: Lab) -> None:
    assert _https(lab, "BRAVO").run_cmd("hostname").std_out == b"BRAVO\r\n"


def test_strict_cbt_refuses_a_client_without_bindings(lab: Lab) -> None:
    with pytest.raises(InvalidCredentialsError):
        _https(lab, "BRAVO", send_cbt=False).run_cmd("hostname")


def test_relaxed_cbt_accepts_a_client_without_bindings(lab: Lab) -> None:
    assert _https(lab, "ALPHA", send_cbt=False).run_cmd("hostname").std_out == b"ALPHA\r\n"


def test_basic_over_https_works_when_enabled(lab: Lab) -> None:
    host = lab.host("ALPHA")
    before = host.counters.snapshot()
    result = _https(lab, "ALPHA", transport="basic", username="Administrator").run_cmd("whoami")
    assert result.std_out == b"alpha\\administrator\r\n"
    assert host.counters.basic_logins - before.basic_logins == 5
    assert host.counters.requests - before.requests == 5


def test_basic_over_https_is_refused_when_disabled(lab: Lab) -> None:
    with pytest.raises(InvalidCredentialsError):
        _https(lab, "BRAVO", transport="basic").run_cmd("whoami")


def test_basic_over_http_is_refused_even_when_enabled(lab: Lab) -> None:
    with pytest.raises(InvalidCredentialsError):
        lab.session("ALPHA", "Administrator", PASSWORDS["ALPHA"], transport="basic").run_cmd("whoami")


def test_basic_with_a_wrong_password_is_refused(lab: Lab) -> None:
    with pytest.raises(InvalidCredentialsError):
        _https(lab, "ALPHA", transport="basic", password="wrong").run_cmd("whoami")
