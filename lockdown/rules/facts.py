"""Host facts: what discovery read from a server, plus what the operator declared."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from lockdown.rules.base import LockdownModel
from lockdown.rules.exceptions import ExceptionState
from lockdown.rules.principals import is_valid_account_name, is_valid_computer_name, is_valid_sid
from lockdown.rules.targets import LEGACY_STORE_GROUP_NAME, STORE_GROUP_NAME, validate_service_name
from lockdown.rules.vocabulary import Arch, DomainRole, Tristate


def _absolute_local_path(value: str) -> str:
    # Facts come from the host, i.e. from a machine we assume may be compromised: accept only
    # plain absolute drive paths, the same shape the profile validation demands.
    if len(value) < 3 or not value[0].isalpha() or value[1:3] != ":\\" or value.startswith("\\\\"):
        raise ValueError(f"not an absolute drive path: {value!r}")
    if any(ord(c) < 32 or c in '*?<>"|/' for c in value) or ":" in value[2:] or "\\..\\" in f"{value}\\":
        raise ValueError(f"unsafe characters in path: {value!r}")
    return value.rstrip("\\") if len(value) > 3 else value


def _optional_sid(value: str | None) -> str | None:
    if value is not None and not is_valid_sid(value):
        raise ValueError(f"malformed SID: {value!r}")
    return value


LocalPath = Annotated[str, Field(max_length=260), AfterValidator(_absolute_local_path)]
OptionalSid = Annotated[str | None, AfterValidator(_optional_sid)]


class Facts(LockdownModel):
    """Facts about one host, as discovery reports them plus operator declarations.

    `sql_integrated` and `integrated_auth` are declared by the operator (no discovery reads
    them reliably); `unknown` makes the rules that depend on them `needs_input`. The
    integrated-authentication rights need `integrated_auth_exception` active as well
    (`lockdown.rules.exceptions`): the caller reads it from the approved exceptions. The
    MailEnable directories come from its registry values (read through the 32-bit view):
    Program Directory, Application Directory (Bin), Configuration Directory and Mail Root.
    """

    computer_name: str = Field(description="NetBIOS name, used to qualify local accounts")
    system_root: LocalPath = Field(description=r"%SystemRoot%, e.g. C:\Windows")
    os_caption: str = Field(max_length=200)
    os_build: int = Field(ge=0, le=1_000_000, description="e.g. 7601 for 2008 R2, 20348 for 2022")
    arch: Arch
    domain_role: DomainRole
    powershell_version: str = Field(max_length=40)
    mailenable_version: str | None = Field(default=None, max_length=40)
    mailenable_edition: str | None = Field(default=None, max_length=40)
    program_dir: LocalPath | None = Field(default=None, description="MailEnable 'Program Directory'")
    application_dir: LocalPath | None = Field(default=None, description="'Application Directory' (Bin)")
    config_dir: LocalPath | None = Field(default=None, description="'Configuration Directory'")
    mail_root: LocalPath | None = Field(default=None, description="'Mail Root', the message store")
    bin64_exists: bool = False
    services: list[str] = Field(default_factory=list, max_length=200, description="Service short names present")
    ime_system_sid: OptionalSid = Field(default=None, description="SID of an existing IME_SYSTEM")
    store_group_name: str | None = Field(default=None, description="IME_STORE_GROUP or legacy IME_STORE_USERS")
    store_group_sid: OptionalSid = None
    windows_search_present: bool = False
    indexing_service_present: bool = False
    defender_present: bool = False
    sql_integrated: Tristate = Tristate.UNKNOWN
    integrated_auth: Tristate = Tristate.UNKNOWN
    integrated_auth_exception: ExceptionState = Field(
        default=ExceptionState.NONE,
        description="Whether an approved exception covers the integrated-authentication rights (from the database)",
    )
    management_networks: list[str] = Field(
        default_factory=list,
        max_length=200,
        description="The customer's management networks (CIDR; from the database): who alone may reach webadmin",
    )

    @field_validator("management_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(v.strip(), strict=False)) for v in value if v.strip()]

    @field_validator("computer_name")
    @classmethod
    def _computer_name(cls, value: str) -> str:
        if not is_valid_computer_name(value):
            raise ValueError(f"not a NetBIOS computer name: {value!r}")
        return value.upper()

    @field_validator("services")
    @classmethod
    def _services(cls, value: list[str]) -> list[str]:
        return sorted({validate_service_name(v).upper() for v in value})

    @field_validator("store_group_name")
    @classmethod
    def _store_group(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in {STORE_GROUP_NAME, LEGACY_STORE_GROUP_NAME}:
            if not is_valid_account_name(value):
                raise ValueError(f"not a group name: {value!r}")
            raise ValueError(f"store group must be {STORE_GROUP_NAME} or {LEGACY_STORE_GROUP_NAME}, got {value!r}")
        return value.upper() if value is not None else None
