import pytest

from tests.unit.winlab.builders import make_host
from winlab.windows.services import SETTLE_SECONDS
from winlab.windows.sql import SqlError

PW = "Xq7!long-Passw0rd"


@pytest.fixture
def sql_host():
    return make_host(sql=True)


def test_sql_mode_is_enterprise_only():
    with pytest.raises(ValueError, match="Enterprise"):
        make_host(sql=True, edition="Professional")


def test_grants_are_idempotent_and_counted_once(sql_host):
    token = sql_host.admin_token()
    sql_host.accounts.create_user("IME_SYSTEM", PW, token)
    session = sql_host.sql.connect(token)
    login = f"{sql_host.name}\\IME_SYSTEM"
    session.create_login_from_windows(login)
    session.create_user("MAILENABLE", login, login)
    assert session.grant("MAILENABLE", ["INSERT", "DELETE", "EXECUTE", "UPDATE"], login) != []
    count = sql_host.mutations
    assert session.grant("MAILENABLE", ["INSERT", "DELETE", "EXECUTE", "UPDATE"], login) == []
    assert sql_host.mutations == count
    assert session.database_permissions("MAILENABLE", login) == ["DELETE", "EXECUTE", "INSERT", "UPDATE"]
    with pytest.raises(SqlError) as exc:
        session.create_login_from_windows(login)
    assert exc.value.number == 15025


def test_unknown_windows_account_and_non_sysadmin_are_refused(sql_host):
    session = sql_host.sql.connect(sql_host.admin_token())
    with pytest.raises(SqlError) as exc:
        session.create_login_from_windows(f"{sql_host.name}\\NOBODY")
    assert exc.value.number == 15401
    with pytest.raises(SqlError) as exc:
        sql_host.sql.connect(sql_host.logon("IME_USER", sql_host.mailenable.install.passwords["IME_USER"]))
    assert exc.value.number == 18456


def test_services_in_sql_mode_stop_without_database_grants_for_their_account(sql_host):
    token = sql_host.admin_token()
    user = sql_host.accounts.create_user("IME_SYSTEM", PW, token)
    sql_host.lsa.add_account_rights(user.sid, ["SeServiceLogonRight"], token)
    from winlab.windows import security as sec

    oici = sec.AceFlags.OI | sec.AceFlags.CI
    for rel in ("@store", "Logging", "Config"):
        sql_host.fs.add_access_rule(
            sql_host.mailenable.install.path(rel), sec.allow(user.sid, sec.FILE_ALL_ACCESS, oici), token
        )
    sql_host.services.change("MEPOPS", token, start_name=".\\IME_SYSTEM", password=PW)
    assert sql_host.services.restart("MEPOPS", token) == 0
    sql_host.advance(SETTLE_SECONDS)
    svc = sql_host.services.get("MEPOPS")
    assert not svc.running
    assert "SQL login" in svc.last_reason
    session = sql_host.sql.connect(token)
    login = f"{sql_host.name}\\IME_SYSTEM"
    session.create_login_from_windows(login)
    session.create_user("MAILENABLE", login, login)
    session.grant("MAILENABLE", ["INSERT", "DELETE", "EXECUTE", "UPDATE"], login)
    assert sql_host.services.start("MEPOPS", token) == 0
    sql_host.advance(SETTLE_SECONDS)
    assert sql_host.services.get("MEPOPS").running


def test_sql_is_unreachable_while_its_service_is_stopped(sql_host):
    token = sql_host.admin_token()
    sql_host.services.stop("MSSQLSERVER", token)
    with pytest.raises(SqlError) as exc:
        sql_host.sql.connect(token)
    assert exc.value.number == 2
