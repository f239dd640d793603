"""pypsrp speaks SPNEGO-wrapped NTLM and its own encryption code: both must work."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from pypsrp.client import Client

from tests.integration.winlab.conftest import PASSWORDS, Lab

pytestmark = pytest.mark.winlab


def _client(lab: Lab, name: str, scheme: str, **kw: object) -> Client:
    url = urlsplit(lab.endpoint(name, scheme))
    return Client(
        url.hostname,
        port=url.port,
        username=".\\Administrator",
        password=PASSWORDS[name],
        ssl=scheme == "https",
        auth="negotiate",
        no_proxy=True,
        **kw,
    )


def test_pypsrp_execute_cmd_over_encrypted_http(lab: Lab) -> None:
    host = lab.host("ALPHA")
    before = host.counters.snapshot()
    stdout, stderr, rc = _client(lab, "ALPHA", "http").execute_cmd("whoami")
    assert (stdout, stderr, rc) == ("alpha\\administrator\r\n", "", 0)
    assert (
        host.counters.soap_requests - before.soap_requests
        == host.counters.encrypted_requests - before.encrypted_requests
    )


def test_pypsrp_execute_cmd_over_https_with_channel_binding(lab: Lab) -> None:
    stdout, _, rc = _client(lab, "BRAVO", "https", cert_validation=str(lab.fleet.ca_path)).execute_cmd("hostname")
    assert (stdout, rc) == ("BRAVO\r\n", 0)
