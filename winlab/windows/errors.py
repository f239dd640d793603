"""Windows errors as the model raises them: a Win32 code and the message Windows prints.

Callers (the future agent interpreter) map these to what PowerShell would show; tests
assert on ``code``. NTSTATUS values from LSA calls use :class:`NtStatusError`, which also
carries the Win32 code ``LsaNtStatusToWinError`` would give.
"""

from __future__ import annotations

ERROR_SUCCESS = 0
ERROR_FILE_NOT_FOUND = 2
ERROR_PATH_NOT_FOUND = 3
ERROR_ACCESS_DENIED = 5
ERROR_SHARING_VIOLATION = 32
ERROR_ALREADY_EXISTS = 183
ERROR_DIR_NOT_EMPTY = 145
ERROR_NO_MORE_ITEMS = 259
ERROR_SERVICE_REQUEST_TIMEOUT = 1053
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_INVALID_SERVICE_ACCOUNT = 1057
ERROR_SERVICE_DISABLED = 1058
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_SERVICE_DEPENDENCY_FAIL = 1068
ERROR_PROCESS_ABORTED = 1067
ERROR_SERVICE_LOGON_FAILED = 1069
ERROR_SERVICE_DEPENDENCY_DELETED = 1075
ERROR_CIRCULAR_DEPENDENCY = 1059
ERROR_NOT_ALL_ASSIGNED = 1300
ERROR_INVALID_OWNER = 1307
ERROR_NO_SUCH_PRIVILEGE = 1313
ERROR_PRIVILEGE_NOT_HELD = 1314
ERROR_LOGON_FAILURE = 1326
ERROR_ACCOUNT_DISABLED = 1331
ERROR_NONE_MAPPED = 1332
ERROR_NO_SUCH_ALIAS = 1376
ERROR_MEMBER_NOT_IN_ALIAS = 1377
ERROR_MEMBER_IN_ALIAS = 1378
ERROR_ALIAS_EXISTS = 1379
ERROR_LOGON_TYPE_NOT_GRANTED = 1385
ERROR_INVALID_MEMBER = 1388
NERR_USER_NOT_FOUND = 2221
NERR_USER_EXISTS = 2224
NERR_PASSWORD_TOO_SHORT = 2245
# Defender cmdlets when the service is absent/disabled (HRESULT, as Get-MpPreference prints it).
HRESULT_DEFENDER_UNAVAILABLE = 0x800106BA

MESSAGES: dict[int, str] = {
    ERROR_SUCCESS: "The operation completed successfully.",
    ERROR_FILE_NOT_FOUND: "The system cannot find the file specified.",
    ERROR_PATH_NOT_FOUND: "The system cannot find the path specified.",
    ERROR_ACCESS_DENIED: "Access is denied.",
    ERROR_SHARING_VIOLATION: "The process cannot access the file because it is being used by another process.",
    ERROR_ALREADY_EXISTS: "Cannot create a file when that file already exists.",
    ERROR_DIR_NOT_EMPTY: "The directory is not empty.",
    ERROR_NO_MORE_ITEMS: "No more data is available.",
    ERROR_SERVICE_REQUEST_TIMEOUT: "The service did not respond to the start or control request in a timely fashion.",
    ERROR_SERVICE_ALREADY_RUNNING: "An instance of the service is already running.",
    ERROR_INVALID_SERVICE_ACCOUNT: (
        "The account name is invalid or does not exist, or the password is invalid for the account name specified."
    ),
    ERROR_SERVICE_DISABLED: (
        "The service cannot be started, either because it is disabled or because it has no enabled devices "
        "associated with it."
    ),
    ERROR_SERVICE_DOES_NOT_EXIST: "The specified service does not exist as an installed service.",
    ERROR_SERVICE_NOT_ACTIVE: "The service has not been started.",
    ERROR_PROCESS_ABORTED: "The process terminated unexpectedly.",
    ERROR_SERVICE_LOGON_FAILED: "The service did not start due to a logon failure.",
    ERROR_SERVICE_DEPENDENCY_FAIL: "The dependency service or group failed to start.",
    ERROR_SERVICE_DEPENDENCY_DELETED: "The dependency service does not exist or has been marked for deletion.",
    ERROR_CIRCULAR_DEPENDENCY: "Circular service dependency was specified.",
    ERROR_NOT_ALL_ASSIGNED: "Not all privileges or groups referenced are assigned to the caller.",
    ERROR_INVALID_OWNER: "This security ID may not be assigned as the owner of this object.",
    ERROR_NO_SUCH_PRIVILEGE: "A specified privilege does not exist.",
    ERROR_PRIVILEGE_NOT_HELD: "A required privilege is not held by the client.",
    ERROR_LOGON_FAILURE: "The user name or password is incorrect.",
    ERROR_ACCOUNT_DISABLED: "This user can't sign in because this account is currently disabled.",
    ERROR_NONE_MAPPED: "No mapping between account names and security IDs was done.",
    ERROR_NO_SUCH_ALIAS: "The specified local group does not exist.",
    ERROR_MEMBER_NOT_IN_ALIAS: "The specified account name is not a member of the group.",
    ERROR_MEMBER_IN_ALIAS: "The specified account name is already a member of the group.",
    ERROR_ALIAS_EXISTS: "The specified local group already exists.",
    ERROR_LOGON_TYPE_NOT_GRANTED: (
        "Logon failure: the user has not been granted the requested logon type at this computer."
    ),
    ERROR_INVALID_MEMBER: (
        "A new member could not be added to a local group because the member has the wrong account type."
    ),
    NERR_USER_NOT_FOUND: "The user name could not be found.",
    NERR_USER_EXISTS: "The account already exists.",
    NERR_PASSWORD_TOO_SHORT: (
        "The password does not meet the password policy requirements. Check the minimum password length, "
        "password complexity and password history requirements."
    ),
    HRESULT_DEFENDER_UNAVAILABLE: "Operation failed with the following error: 0x800106ba",
}

STATUS_ACCESS_DENIED = 0xC0000022
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
STATUS_NO_SUCH_PRIVILEGE = 0xC0000060
STATUS_NO_MORE_ENTRIES = 0x8000001A

# What LsaNtStatusToWinError returns for the statuses the model raises.
NTSTATUS_TO_WIN32: dict[int, int] = {
    STATUS_ACCESS_DENIED: ERROR_ACCESS_DENIED,
    STATUS_OBJECT_NAME_NOT_FOUND: ERROR_FILE_NOT_FOUND,
    STATUS_NO_SUCH_PRIVILEGE: ERROR_NO_SUCH_PRIVILEGE,
    STATUS_NO_MORE_ENTRIES: ERROR_NO_MORE_ITEMS,
}


class Win32Error(Exception):
    """A failed Windows call: ``code`` is the Win32 error, ``message`` the text Windows prints."""

    def __init__(self, code: int, target: str = "", message: str | None = None) -> None:
        self.code = code
        self.target = target
        self.message = message if message is not None else MESSAGES.get(code, f"Unknown error (0x{code:X}).")
        super().__init__(f"{self.message} [{code}]" + (f" ({target})" if target else ""))


class NtStatusError(Win32Error):
    """An LSA call that returned an NTSTATUS; ``status`` is it, ``code`` its Win32 translation."""

    def __init__(self, status: int, target: str = "") -> None:
        self.status = status
        super().__init__(NTSTATUS_TO_WIN32.get(status, 317), target)
