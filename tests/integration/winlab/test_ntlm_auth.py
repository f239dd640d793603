"""NTLM logins: per-host accounts, every domain form, wrong passwords, other hosts' users."""

from __future__ import annotations

import pytest
from winrm.exceptions import InvalidCredentialsError

from tests.integration.winlab.conftest import DEPLOY_PASSWORD, PASSWORDS, Lab

pytestmark = pytest.mark.winlab


@pytest.mark.parametrize(
    "username", ["Administrator", ".\\Administrator", "ALPHA\\Administrator", "alpha\\ADMINISTRATOR"]
)
def test_every_local_account_form_logs_on(lab: Lab, username: str) -> None:
    result = lab.session("ALPHA", username).run_cmd("whoami")
    assert (result.status_code, result.std_out) == (0, b"alpha\\administrator\r\n")


def test_wrong_password_raises_invalid_credentials_and_counts_a_failure(lab: Lab) -> None:
    before = lab.host("ALPHA").counters.auth_failures
    with pytest.raises(InvalidCredentialsError):
        lab.session("ALPHA", password="not-the-password").run_cmd("whoami")
    assert lab.host("ALPHA").counters.auth_failures == before + 1


def test_same_account_name_has_each_hosts_own_password(lab: Lab) -> None:
    assert lab.session("BRAVO").run_cmd("hostname").std_out == b"BRAVO\r\n"
    with pytest.raises(InvalidCredentialsError):
        lab.session("BRAVO", password=PASSWORDS["ALPHA"]).run_cmd("hostname")


def test_user_of_another_host_cannot_log_on(lab: Lab) -> None:
    assert lab.session("ALPHA", "deploy", DEPLOY_PASSWORD).run_cmd("whoami").std_out == b"alpha\\deploy\r\n"
    with pytest.raises(InvalidCredentialsError):
        lab.session("BRAVO", "deploy", DEPLOY_PASSWORD).run_cmd("whoami")


def test_another_computers_domain_prefix_is_refused(lab: Lab) -> None:
    with pytest.raises(InvalidCredentialsError):
        lab.session("ALPHA", "BRAVO\\Administrator").run_cmd("whoami")


def test_password_change_takes_effect_for_new_logins(lab: Lab) -> None:
    host = lab.host("ALPHA")
    host.set_password("deploy", "N3w-password")
    try:
        with pytest.raises(InvalidCredentialsError):
            lab.session("ALPHA", "deploy", DEPLOY_PASSWORD).run_cmd("whoami")
        assert lab.session("ALPHA", "deploy", "N3w-password").run_cmd("whoami").status_code == 0
    finally:
        host.set_password("deploy", DEPLOY_PASSWORD)


def test_authenticated_user_without_winrm_access_gets_access_denied_fault(lab: Lab) -> None:
    from winrm.exceptions import WSManFaultError

    with pytest.raises(WSManFaultError) as info:
        lab.session("ALPHA", "viewer", "Viewer-Pass4").run_cmd("whoami")
    assert info.value.wsman_fault_code == 5
