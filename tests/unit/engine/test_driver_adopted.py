"""An IME_SYSTEM that MEInstaller made (winlab): a service moves to it only when the stored password is its password,
or when the operator chose to reset that password, which then updates every service running as it."""

from __future__ import annotations

from lockdown.rules.vocabulary import AgentMode, RuleAction
from tests.unit.engine.harness import SERVICE_PASSWORD, Harness, harness, steps_of

MOVED = "service_identity.memtas"


def _adopted() -> Harness:
    # MEInstaller's hardening with the MTA left on LocalSystem: the plan moves MEMTAS to the adopted account
    return harness(hardened_by_meinstaller="IME_STORE_GROUP", meinstaller_mta_localsystem=True)


def _changed_services(h: Harness) -> list[str]:
    return [s.args["name"] for p in h.programs for s in steps_of(p, "service_change")]


def test_an_adopted_account_whose_password_is_not_the_stored_one_keeps_the_service_where_it_is() -> None:
    h = _adopted()
    plan = h.plan()
    h.programs.clear()
    result = h.run(AgentMode.APPLY, plan=plan)
    logon = next(s for s in h.programs[0].steps if s.id == "o.logon")
    assert logon.args == {"user": "S19ENG\\IME_SYSTEM", "password": "{{SERVICE_PASSWORD}}"}
    assert _changed_services(h) == []
    item = next(i for i in result.items if i.rule_id == MOVED)
    assert item.action is RuleAction.FAILED
    assert item.error is not None
    assert "the stored service password does not match it" in item.error
    assert h.host.services.get("MEMTAS").start_name == "LocalSystem"
    assert result.rotation is None


def test_an_adopted_account_with_the_stored_password_runs_the_service() -> None:
    h = _adopted()
    h.host.accounts.set_password("IME_SYSTEM", SERVICE_PASSWORD, h.host.admin_token())
    plan = h.plan()
    h.programs.clear()
    result = h.run(AgentMode.APPLY, plan=plan)
    assert result.error is None
    assert _changed_services(h) == ["MEMTAS"]
    assert next(i for i in result.items if i.rule_id == MOVED).action is RuleAction.CHANGED


def test_a_right_password_whose_network_logon_is_denied_is_still_the_right_one() -> None:
    h = _adopted()
    token = h.host.admin_token()
    h.host.accounts.set_password("IME_SYSTEM", SERVICE_PASSWORD, token)
    h.host.lsa.add_account_rights(h.host.accounts.user("IME_SYSTEM").sid, ["SeDenyNetworkLogonRight"], token)
    plan = h.plan()
    h.programs.clear()
    h.run(AgentMode.APPLY, plan=plan)
    logon = h.results[-2].by_id()["o.logon"]
    assert logon.result == {"ok": False, "code": 1385}
    assert "MEMTAS" in _changed_services(h)


def test_resetting_the_adopted_password_updates_every_service_running_as_the_account() -> None:
    h = _adopted()
    plan = h.plan()
    h.programs.clear()
    result = h.run(AgentMode.APPLY, plan=plan, reset_adopted_password=True)
    assert result.error is None
    sid = h.host.accounts.user("IME_SYSTEM").sid
    assert result.rotation is not None
    assert result.rotation.account_sid == sid
    assert result.rotation.services == ["MEIMAPS", "MEPOPS", "MESMTPCS"]
    assert result.rotation.password_set
    assert sorted(_changed_services(h)) == ["MEIMAPS", "MEMTAS", "MEPOPS", "MESMTPCS"]
    assert h.host.accounts.user("IME_SYSTEM").password == SERVICE_PASSWORD
    for name in ("MEMTAS", "MESMTPCS", "MEPOPS", "MEIMAPS"):
        assert h.host.services.get(name).password == SERVICE_PASSWORD
        assert h.host.services.get(name).running
    assert result.action is RuleAction.CHANGED
