"""discover: the one read-only program, and the Facts built from whatever the host answered (untrusted)."""

from __future__ import annotations

from typing import Any

import pytest

from lockdown.engine import driver
from lockdown.engine.program import Step, StepResult
from lockdown.rules.vocabulary import AgentMode, Arch, DomainRole
from tests.unit.engine.scripted import Answer, ScriptedHost

IME = "S-1-5-21-1-2-3-1001"
STORE = "S-1-5-21-1-2-3-1010"
LEGACY = "S-1-5-21-1-2-3-1011"
ME_DIR = "C:\\Program Files (x86)\\Mail Enable"


def _steps(**results: Any) -> dict[str, StepResult]:
    out = {}
    for step_id, value in results.items():
        if isinstance(value, StepResult):
            out[step_id] = value
        else:
            out[step_id] = StepResult(id=step_id, op="host_info", status="ok", result=value)
    return out


def _me(**values: Any) -> dict[str, Any]:
    return {"exists": True, "values": values}


def test_discover_is_one_read_only_program() -> None:
    host = ScriptedHost(answers={"host": {"computer_name": "S19ENG"}})
    result = host.run(mode=AgentMode.DISCOVER, job_id="d-1", service_account="MEADMIN")
    assert len(host.programs) == 1
    (program,) = host.programs
    assert (program.job_id, program.mode, program.secrets, program.on_failure) == ("d-1", "discover", {}, [])
    assert program.steps == [
        Step(id="host", op="host_info"),
        Step(
            id="me",
            op="registry_read",
            args={"path": driver.ME_KEY, "view": 32, "names": list(driver.ME_VALUES)},
            bind={"ME_PROGRAM_DIR": "values.Program Directory"},
        ),
        Step(id="bin64", op="sd_read", args={"kind": "path", "path": "{{ME_PROGRAM_DIR}}\\Bin64"}),
        Step(id="services", op="service_get", args={"names": None}),
        Step(id="ime", op="user_get", args={"name": "MEADMIN"}),
        Step(id="store", op="group_get", args={"name": "IME_STORE_GROUP"}),
        Step(id="legacy", op="group_get", args={"name": "IME_STORE_USERS"}),
        Step(id="defender", op="defender_get"),
    ]
    assert driver.ME_KEY == "HKLM\\SOFTWARE\\Mail Enable\\Mail Enable"
    assert result.facts is not None
    assert result.facts.computer_name == "S19ENG"
    assert result.error is None
    assert result.mode is AgentMode.DISCOVER
    assert result.job_id == "d-1"


def test_discover_refused_by_the_host_has_no_facts() -> None:
    host = ScriptedHost(refusals={0: ("not_elevated", "not an administrator")})
    result = host.run(mode=AgentMode.DISCOVER)
    assert result.facts is None
    assert result.error is not None
    assert result.error.code == "not_elevated"


def test_facts_of_a_full_answer() -> None:
    facts = driver.facts_from(
        _steps(
            host={
                "computer_name": "mail1",
                "system_root": "D:\\Windows",
                "os_caption": "Microsoft Windows Server 2019 Standard",
                "os_build": 17763,
                "arch": "x64",
                "domain_role": 3,
                "powershell_version": "5.1.17763.1",
            },
            me=_me(
                **{
                    "Program Directory": ME_DIR,
                    "Application Directory": ME_DIR + "\\Bin",
                    "Configuration Directory": ME_DIR + "\\Config",
                    "Mail Root": "E:\\Mail",
                    "Professional Version": "10.44",
                    "Version": "9.0",
                }
            ),
            bin64={"exists": True},
            services={
                "services": [
                    {"name": "MEMTAS", "exists": True},
                    {"name": "WSearch", "exists": True},
                    {"name": "cisvc", "exists": True},
                    {"name": "Gone", "exists": False},
                    {"name": "bad name; rm", "exists": True},
                    "not an object",
                ]
            },
            ime={"exists": True, "sid": IME},
            store={"exists": True, "sid": STORE},
            legacy={"exists": True, "sid": LEGACY},
            defender={"installed": True},
        )
    )
    assert facts.computer_name == "MAIL1"
    assert facts.system_root == "D:\\Windows"
    assert facts.os_caption == "Microsoft Windows Server 2019 Standard"
    assert facts.os_build == 17763
    assert facts.arch is Arch.X64
    assert facts.domain_role is DomainRole.MEMBER_SERVER
    assert facts.powershell_version == "5.1.17763.1"
    assert (facts.mailenable_edition, facts.mailenable_version) == ("Professional", "10.44")
    assert facts.program_dir == ME_DIR
    assert facts.application_dir == ME_DIR + "\\Bin"
    assert facts.config_dir == ME_DIR + "\\Config"
    assert facts.mail_root == "E:\\Mail"
    assert facts.bin64_exists is True
    assert facts.services == ["CISVC", "MEMTAS", "WSEARCH"]
    assert facts.windows_search_present is True
    assert facts.indexing_service_present is True
    assert facts.ime_system_sid == IME
    assert (facts.store_group_name, facts.store_group_sid) == ("IME_STORE_GROUP", STORE)
    assert facts.defender_present is True


def test_facts_of_an_empty_answer_are_the_safe_defaults() -> None:
    facts = driver.facts_from({})
    assert facts.computer_name == "UNKNOWN"
    assert facts.system_root == "C:\\Windows"
    assert facts.os_caption == "Windows"
    assert facts.os_build == 0
    assert facts.arch is Arch.X64
    assert facts.domain_role is DomainRole.STANDALONE_SERVER
    assert facts.powershell_version == ""
    assert (facts.mailenable_edition, facts.mailenable_version) == (None, None)
    assert (facts.program_dir, facts.application_dir, facts.config_dir, facts.mail_root) == (None, None, None, None)
    assert facts.bin64_exists is False
    assert facts.services == []
    assert (facts.windows_search_present, facts.indexing_service_present, facts.defender_present) == (
        False,
        False,
        False,
    )
    assert facts.ime_system_sid is None
    assert (facts.store_group_name, facts.store_group_sid) == (None, None)


def test_steps_that_did_not_succeed_are_not_read() -> None:
    failed = {
        name: StepResult(
            id=name,
            op="host_info",
            status="error",
            result=value,
            error={"code": "win32_5", "message": "Access is denied."},  # type: ignore[arg-type]
        )
        for name, value in {
            "host": {"computer_name": "MAIL1", "os_build": 17763},
            "me": _me(Version="10.1"),
            "bin64": {"exists": True},
            "ime": {"exists": True, "sid": IME},
            "defender": {"installed": True},
        }.items()
    }
    no_result = StepResult(id="store", op="group_get", status="ok", result=None)
    facts = driver.facts_from({**failed, "store": no_result})
    assert facts.computer_name == "UNKNOWN"
    assert facts.os_build == 0
    assert facts.mailenable_version is None
    assert facts.bin64_exists is False
    assert facts.defender_present is False
    assert facts.ime_system_sid is None
    assert facts.store_group_name is None


@pytest.mark.parametrize(
    ("values", "edition", "version"),
    [
        ({"Enterprise Version": "10.5", "Professional Version": "10.4", "Version": "9"}, "Enterprise", "10.5"),
        ({"Professional Version": "10.4", "Standard Version": "10.3"}, "Professional", "10.4"),
        ({"Standard Version": "10.3", "Version": "9"}, "Standard", "10.3"),
        ({"Version": "9.60"}, "Standard", "9.60"),
        ({"Enterprise Version": "", "Version": "9.60"}, "Standard", "9.60"),
        ({"Enterprise Version": 10, "Version": "9.60"}, "Standard", "9.60"),
        ({}, "Standard", None),
        ({"Version": "1" * 50}, "Standard", "1" * 40),
    ],
)
def test_the_edition_is_the_first_with_a_version(values: dict[str, Any], edition: str, version: str | None) -> None:
    facts = driver.facts_from(_steps(me=_me(**values)))
    assert (facts.mailenable_edition, facts.mailenable_version) == (edition, version)


def test_no_mailenable_key_means_no_edition_whatever_the_values() -> None:
    facts = driver.facts_from(_steps(me={"exists": False, "values": {"Version": "10", "Program Directory": ME_DIR}}))
    assert (facts.mailenable_edition, facts.mailenable_version) == (None, None)
    # the directories are still read (the key's values are what the host said)
    assert facts.program_dir == ME_DIR


def test_values_that_are_not_an_object_or_not_text_are_ignored() -> None:
    facts = driver.facts_from(_steps(me={"exists": True, "values": ["Version", "10"]}))
    assert facts.mailenable_version is None
    assert facts.program_dir is None
    facts = driver.facts_from(_steps(me=_me(**{"Program Directory": 5, "Mail Root": ""})))
    assert facts.program_dir is None
    assert facts.mail_root is None


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (0, DomainRole.STANDALONE_WORKSTATION),
        (5, DomainRole.PRIMARY_DOMAIN_CONTROLLER),
        (6, DomainRole.STANDALONE_SERVER),
        (-1, DomainRole.STANDALONE_SERVER),
        ("3", DomainRole.STANDALONE_SERVER),
        (None, DomainRole.STANDALONE_SERVER),
    ],
)
def test_the_domain_role_is_read_by_number_only_within_range(role: Any, expected: DomainRole) -> None:
    assert driver.facts_from(_steps(host={"domain_role": role})).domain_role is expected


def test_host_texts_are_cut_to_the_contract_lengths_and_x86_is_recognised() -> None:
    facts = driver.facts_from(_steps(host={"os_caption": "W" * 300, "powershell_version": "5" * 60, "arch": "x86"}))
    assert facts.os_caption == "W" * 200
    assert facts.powershell_version == "5" * 40
    assert facts.arch is Arch.X86
    assert driver.facts_from(_steps(host={"arch": "X86"})).arch is Arch.X64


def test_the_legacy_store_group_is_used_only_when_the_new_one_is_missing() -> None:
    facts = driver.facts_from(_steps(store={"exists": False}, legacy={"exists": True, "sid": LEGACY}))
    assert (facts.store_group_name, facts.store_group_sid) == ("IME_STORE_USERS", LEGACY)
    facts = driver.facts_from(_steps(store={"exists": False, "sid": STORE}, legacy={"exists": False, "sid": LEGACY}))
    assert (facts.store_group_name, facts.store_group_sid) == (None, None)


def test_an_account_that_does_not_exist_has_no_sid() -> None:
    facts = driver.facts_from(_steps(ime={"exists": False, "sid": IME}))
    assert facts.ime_system_sid is None


def test_search_services_are_recognised_in_any_case() -> None:
    facts = driver.facts_from(
        _steps(services={"services": [{"name": "wsearch", "exists": True}, {"name": "CISVC", "exists": True}]})
    )
    assert facts.windows_search_present
    assert facts.indexing_service_present
    facts = driver.facts_from(_steps(services={"services": [{"name": "WSearch", "exists": False}]}))
    assert not facts.windows_search_present


def test_a_service_list_that_is_null_means_no_services() -> None:
    assert driver.facts_from(_steps(services={"services": None})).services == []


def test_the_bin64_check_reads_through_the_bound_program_directory() -> None:
    host = ScriptedHost(answers={"bin64": Answer(result={"exists": True}), "defender": {"installed": False}})
    facts = host.run(mode=AgentMode.DISCOVER).facts
    assert facts is not None
    assert facts.bin64_exists is True
    assert facts.defender_present is False
