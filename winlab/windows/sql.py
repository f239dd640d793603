"""SQL Server (the default instance, or one named instance): Windows logins, database users, grants.

Connections use integrated security: the caller's token is matched against Windows logins by
SID (the user, or a Windows group login it belongs to). Statements behave like T-SQL: creating
what exists fails with SQL Server's error number; GRANT of what is granted succeeds and changes
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from winlab.windows.accounts import Accounts
from winlab.windows.context import HostContext
from winlab.windows.errors import Win32Error
from winlab.windows.tokens import Token

DATABASE_PERMISSIONS = frozenset(
    {
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "EXECUTE",
        "CONNECT",
        "ALTER",
        "CONTROL",
        "REFERENCES",
        "VIEW DEFINITION",
        "CREATE TABLE",
        "CREATE PROCEDURE",
    }
)


DEFAULT_INSTANCE = "MSSQLSERVER"
LOCAL_NAMES = frozenset({".", "(local)", "localhost", "127.0.0.1", "::1", "lpc:."})
NETWORK_ERROR = (
    "A network-related or instance-specific error occurred while establishing a connection to SQL Server. "
    "The server was not found or was not accessible. Verify that the instance name is correct and that SQL "
    "Server is configured to allow remote connections."
)
# SqlClient's provider suffixes: the default instance's pipe \\.\pipe\sql\query is missing (Number 2), or
# SQL Server Resolution Protocol finds no such named instance (Number -1, error 26).
NO_DEFAULT_INSTANCE = " (provider: Named Pipes Provider, error: 40 - Could not open a connection to SQL Server)"
NO_NAMED_INSTANCE = " (provider: SQL Network Interfaces, error: 26 - Error Locating Server/Instance Specified)"


def service_name_for(instance: str) -> str:
    """The Windows service of an instance: MSSQLSERVER, or MSSQL$<name> for a named instance."""
    return DEFAULT_INSTANCE if instance.upper() == DEFAULT_INSTANCE else f"MSSQL${instance.upper()}"


class SqlError(Exception):
    """A SqlException: ``number`` is SQL Server's error number."""

    def __init__(self, number: int, message: str) -> None:
        self.number = number
        self.message = message
        super().__init__(f"Msg {number}: {message}")


@dataclass
class Login:
    """A server principal created FROM WINDOWS (user or group), identified by its Windows SID."""

    name: str
    sid: str
    is_group: bool = False
    sysadmin: bool = False


@dataclass
class DatabaseUser:
    name: str
    login_sid: str
    roles: set[str] = field(default_factory=set)


@dataclass
class Database:
    name: str
    users: dict[str, DatabaseUser] = field(default_factory=dict)
    # (user name lower, permission) pairs granted at DATABASE scope.
    grants: set[tuple[str, str]] = field(default_factory=set)

    def user_for_sids(self, token_sids: frozenset[str]) -> DatabaseUser | None:
        return next((u for u in self.users.values() if u.login_sid in token_sids), None)


class SqlServer:
    """One SQL Server instance with its logins and databases; reachable only while its service runs.

    `instance` is MSSQLSERVER (the default instance, Data Source ".") or a named instance such as
    SQLEXPRESS (service MSSQL$SQLEXPRESS, Data Source ".\\SQLEXPRESS"). "SQL Server Express ... always
    installs in a named instance unless you force a default installation during setup", and "the
    client must specify both the server name and the instance name when connecting" (Using Named
    Instances, https://learn.microsoft.com/previous-versions/sql/sql-server-2005/ms165614(v=sql.90)).
    """

    def __init__(
        self,
        ctx: HostContext,
        accounts: Accounts,
        is_running: Callable[[], bool],
        *,
        instance: str = DEFAULT_INSTANCE,
        machine_name: str = "",
    ) -> None:
        self.ctx = ctx
        self.accounts = accounts
        self._is_running = is_running
        self.instance = instance.upper()
        self.machine_name = machine_name
        self.logins: dict[str, Login] = {}
        self.databases: dict[str, Database] = {}

    def running(self) -> bool:
        return self._is_running()

    @property
    def is_default_instance(self) -> bool:
        return self.instance == DEFAULT_INSTANCE

    @property
    def service_name(self) -> str:
        return service_name_for(self.instance)

    @property
    def data_source(self) -> str:
        """The Data Source that reaches this instance from the host itself."""
        return "." if self.is_default_instance else f".\\{self.instance}"

    def connect_to(self, data_source: str, token: Token) -> SqlSession:
        """SqlConnection("Data Source=<data_source>;Integrated Security=SSPI").Open() on the host itself.

        "." / "(local)" / "localhost" / the computer name reach the default instance; "<server>\\<NAME>"
        a named one. Asking for an instance that is not installed fails the way SqlClient does:
        the default instance -> SqlException Number 2 (Named Pipes Provider, error: 40), a named
        instance -> Number -1 (SQL Network Interfaces, error: 26). The message texts are SqlClient's;
        the Number values are as SqlClient reports them in public error reports, not checked on a
        real host (assumption in winlab/README.md).
        """
        server, _, instance = data_source.strip().partition("\\")
        server = server.strip().lower()
        if server.startswith("tcp:") or server.startswith("np:"):
            server = server.split(":", 1)[1]
        server = server.split(",", 1)[0]
        local = server in LOCAL_NAMES or (bool(self.machine_name) and server == self.machine_name.lower())
        wanted = (instance.strip() or DEFAULT_INSTANCE).upper()
        if not local:
            raise SqlError(53, NETWORK_ERROR + " (provider: Named Pipes Provider, error: 40 - Could not open a "
                           "connection to SQL Server)")  # fmt: skip
        if wanted != self.instance:
            if wanted == DEFAULT_INSTANCE:
                raise SqlError(2, NETWORK_ERROR + NO_DEFAULT_INSTANCE)
            raise SqlError(-1, NETWORK_ERROR + NO_NAMED_INSTANCE)
        return self.connect(token)

    def connect(self, token: Token) -> SqlSession:
        """SqlConnection with Integrated Security=SSPI to this instance (whatever its name)."""
        if not self.running():
            raise SqlError(
                2,
                "A network-related or instance-specific error occurred while establishing a connection to SQL "
                "Server. The server was not found or was not accessible.",
            )
        sids_in_token = token.sids
        login = next((lg for lg in self.logins.values() if lg.sid in sids_in_token), None)
        if login is None:
            raise SqlError(18456, f"Login failed for user '{token.account}'.")
        sysadmin = any(lg.sysadmin for lg in self.logins.values() if lg.sid in sids_in_token)
        return SqlSession(self, token, sysadmin)

    def add_login(self, name: str, *, sysadmin: bool = False) -> Login:
        """Build-time: a Windows login, resolved through the host's accounts."""
        account = self.accounts.lookup_name(name)
        login = Login(account.qualified, account.sid, account.sid_type.name in ("ALIAS", "GROUP"), sysadmin)
        self.logins[login.name.lower()] = login
        return login

    def has_database_permissions(self, token: Token, database: str, permissions: set[str]) -> str | None:
        """Why ``token`` cannot use ``permissions`` in ``database``, or None (effective permissions)."""
        if not self.running():
            return "SQL Server is not running"
        if not any(lg.sid in token.sids for lg in self.logins.values()):
            return f"no SQL login for {token.account}"
        if any(lg.sysadmin for lg in self.logins.values() if lg.sid in token.sids):
            return None
        db = self.databases.get(database.lower())
        if db is None:
            return f"database {database} does not exist"
        user = db.user_for_sids(token.sids)
        if user is None:
            return f"no user in {database} for {token.account}"
        if "db_owner" in user.roles:
            return None
        missing = sorted(p for p in permissions if (user.name.lower(), p) not in db.grants)
        return f"{user.name} lacks {', '.join(missing)} on {database}" if missing else None

    def state(self) -> dict[str, object]:
        out = self._state()
        if not self.is_default_instance:
            out["instance"] = self.instance
        return out

    def _state(self) -> dict[str, object]:
        return {
            "logins": {
                lg.name: {"sid": lg.sid, "sysadmin": lg.sysadmin}
                for lg in sorted(self.logins.values(), key=lambda x: x.name)
            },
            "databases": {
                db.name: {
                    "users": {u.name: {"login_sid": u.login_sid, "roles": sorted(u.roles)} for u in db.users.values()},
                    "grants": sorted(f"{u}:{p}" for u, p in db.grants),
                }
                for db in self.databases.values()
            },
        }


class SqlSession:
    """An open connection: the T-SQL the hardening uses, as methods."""

    def __init__(self, server: SqlServer, token: Token, sysadmin: bool) -> None:
        self.server = server
        self.token = token
        self.sysadmin = sysadmin

    def _require_sysadmin(self) -> None:
        if not self.sysadmin:
            raise SqlError(15247, "User does not have permission to perform this action.")

    def _db(self, name: str) -> Database:
        db = self.server.databases.get(name.lower())
        if db is None:
            raise SqlError(911, f"Database '{name}' does not exist. Make sure that the name is entered correctly.")
        return db

    def suser_id(self, name: str) -> str | None:
        """SUSER_ID(name) (returns the login's SID here), or None."""
        login = self.server.logins.get(name.lower())
        return login.sid if login else None

    def database_principal_id(self, database: str, name: str) -> str | None:
        user = self._db(database).users.get(name.lower())
        return user.name if user else None

    def create_login_from_windows(self, name: str) -> Login:
        """CREATE LOGIN [HOST\\name] FROM WINDOWS."""
        self._require_sysadmin()
        if name.lower() in self.server.logins:
            raise SqlError(15025, f"The server principal '{name}' already exists.")
        try:
            account = self.server.accounts.lookup_name(name)
        except Win32Error:
            raise SqlError(15401, f"Windows NT user or group '{name}' not found. Check the name again.") from None
        if any(lg.sid == account.sid for lg in self.server.logins.values()):
            raise SqlError(15025, f"The server principal '{name}' already exists.")
        login = Login(name, account.sid, account.sid_type.name in ("ALIAS", "GROUP"))
        self.server.logins[name.lower()] = login
        self.server.ctx.mutated("sql.create_login", name)
        return login

    def drop_login(self, name: str) -> None:
        self._require_sysadmin()
        if self.server.logins.pop(name.lower(), None) is None:
            raise SqlError(
                15151, f"Cannot drop the login '{name}', because it does not exist or you do not have permission."
            )
        self.server.ctx.mutated("sql.drop_login", name)

    def create_user(self, database: str, name: str, login: str) -> DatabaseUser:
        """USE [db]; CREATE USER [name] FOR LOGIN [login]."""
        self._require_sysadmin()
        db = self._db(database)
        if name.lower() in db.users:
            raise SqlError(15023, f"User, group, or role '{name}' already exists in the current database.")
        server_login = self.server.logins.get(login.lower())
        if server_login is None:
            raise SqlError(15007, f"'{login}' is not a valid login or you do not have permission.")
        user = DatabaseUser(name, server_login.sid)
        db.users[name.lower()] = user
        self.server.ctx.mutated("sql.create_user", f"{database}:{name}")
        return user

    def drop_user(self, database: str, name: str) -> None:
        self._require_sysadmin()
        db = self._db(database)
        if db.users.pop(name.lower(), None) is None:
            raise SqlError(
                15151, f"Cannot drop the user '{name}', because it does not exist or you do not have permission."
            )
        db.grants = {(u, p) for u, p in db.grants if u != name.lower()}
        self.server.ctx.mutated("sql.drop_user", f"{database}:{name}")

    def _check(self, db: Database, permissions: list[str], principal: str) -> list[str]:
        perms = [p.upper() for p in permissions]
        for p in perms:
            if p not in DATABASE_PERMISSIONS:
                raise SqlError(102, f"Incorrect syntax near '{p}'.")
        if principal.lower() not in db.users:
            raise SqlError(
                15151, f"Cannot find the user '{principal}', because it does not exist or you do not have permission."
            )
        return perms

    def grant(self, database: str, permissions: list[str], principal: str) -> list[str]:
        """GRANT perms ON DATABASE::[db] TO [principal]; returns the permissions newly granted."""
        self._require_sysadmin()
        db = self._db(database)
        added = [p for p in self._check(db, permissions, principal) if (principal.lower(), p) not in db.grants]
        for p in added:
            db.grants.add((principal.lower(), p))
        if added:
            self.server.ctx.mutated("sql.grant", f"{database}:{principal}:{','.join(added)}")
        return added

    def revoke(self, database: str, permissions: list[str], principal: str) -> list[str]:
        self._require_sysadmin()
        db = self._db(database)
        removed = [p for p in self._check(db, permissions, principal) if (principal.lower(), p) in db.grants]
        for p in removed:
            db.grants.discard((principal.lower(), p))
        if removed:
            self.server.ctx.mutated("sql.revoke", f"{database}:{principal}:{','.join(removed)}")
        return removed

    def database_permissions(self, database: str, principal: str) -> list[str]:
        """Explicit GRANTs at DATABASE scope (sys.database_permissions)."""
        db = self._db(database)
        return sorted(p for u, p in db.grants if u == principal.lower())
