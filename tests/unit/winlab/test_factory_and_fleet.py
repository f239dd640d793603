import pytest

from winlab.windows.factory import HostSpec, build_host, fleet_specs


def test_fleet_specs_are_deterministic_per_seed():
    assert fleet_specs(20, seed=5) == fleet_specs(20, seed=5)
    assert fleet_specs(20, seed=5)[10:] != fleet_specs(20, seed=6)[10:]


def test_first_eight_hosts_cover_every_dimension():
    specs = fleet_specs(8, seed=1)
    assert {s.os for s in specs} == {"2008r2", "2016", "2019", "2022"}
    assert {s.edition.value for s in specs} == {"Standard", "Professional", "Enterprise"}
    assert {s.version.split(".")[0] for s in specs} == {"2", "9", "10"}
    assert {s.install_path for s in specs} == {"default", "plesk"}
    assert {s.sql for s in specs} == {True, False}
    assert {s.hardened_by_meinstaller for s in specs} == {None, "IME_STORE_GROUP", "IME_STORE_USERS"}
    assert {s.wmf51 for s in specs} == {True, False}
    assert {s.domain_member for s in specs} == {True, False}
    assert {s.uac_filtering for s in specs} == {True, False}
    assert {s.admin_account for s in specs} == {"builtin", "local", "domain"}


def test_every_fleet_host_builds_healthy_and_reachable_by_its_admin_account():
    for spec in fleet_specs(12, seed=2, store_files=5):
        host = build_host(spec)
        assert host.health().ok, (spec.name, host.health().reasons)
        token = host.admin_token()
        expected_elevated = spec.admin_account != "local" or not spec.uac_filtering
        assert token.elevated == expected_elevated, spec
        assert host.mutations == 0


def test_every_tenth_host_has_a_big_store():
    specs = fleet_specs(10, seed=3, store_files=5)
    assert specs[9].store_files == 100
    assert specs[0].store_files == 5


def test_invalid_combinations_are_refused():
    with pytest.raises(ValueError, match="wmf51"):
        HostSpec(os="2019", wmf51=True)
    with pytest.raises(ValueError, match="domain"):
        HostSpec(admin_account="domain")
