"""The one vocabulary of lockdown rules: statuses, actions, rule types and their parameters.

Every other part of the product (Django choices, the agent, winlab, reports) takes these
values from here, so a status spelled differently in two places cannot happen.
"""

from __future__ import annotations

from enum import StrEnum


class RuleStatus(StrEnum):
    """The judged state of one rule on one resolved target (DESIGN.md, "One vocabulary")."""

    COMPLIANT = "compliant"
    DRIFT = "drift"
    NOT_APPLICABLE = "not_applicable"
    NEEDS_INPUT = "needs_input"
    ERROR = "error"
    WAIVED = "waived"


class RuleAction(StrEnum):
    """What an apply or rollback did to one rule's target; separate from its status."""

    NONE = "none"
    CHANGED = "changed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class RuleType(StrEnum):
    """The kinds of rule a profile may hold; the discriminator of the `Rule` union."""

    REGISTRY_ACL = "registry_acl"
    FILE_ACL = "file_acl"
    FILE_DENY = "file_deny"
    LOCAL_USER = "local_user"
    LOCAL_GROUP = "local_group"
    GROUP_MEMBER = "group_member"
    USER_RIGHT = "user_right"
    SQL_GRANT = "sql_grant"
    SERVICE_IDENTITY = "service_identity"
    PATH_ACL = "path_acl"
    PREFLIGHT = "preflight"
    # Checks beyond the 2005 guide (issue 14): verified, never changed by harden (VERIFY_ONLY_TYPES).
    REGISTRY_VALUE = "registry_value"
    REGISTRY_ACL_ONLY = "registry_acl_only"
    SMTP_PROBE = "smtp_probe"
    MAILENABLE_VERSION = "mailenable_version"
    IIS_IP_RESTRICTION = "iis_ip_restriction"


VERIFY_ONLY_TYPES = frozenset(
    {
        RuleType.REGISTRY_VALUE,
        RuleType.REGISTRY_ACL_ONLY,
        RuleType.SMTP_PROBE,
        RuleType.MAILENABLE_VERSION,
        RuleType.IIS_IP_RESTRICTION,
    }
)
"""Rule types harden judges but never changes: each rule says how to fix it by hand (its `remedy`)."""

WORKER_PROBE_TYPES = frozenset({RuleType.SMTP_PROBE})
"""Rule types the worker observes itself over the network, not through the agent."""


class Edition(StrEnum):
    """MailEnable's editions (standards-and-advisories.md §1.1). The registry tells Standard, Professional and
    Enterprise apart (`Professional Version`, `Enterprise Version`); Enterprise Premium writes no value of its own
    that is documented, so discovery reports it as Enterprise."""

    STANDARD = "Standard"
    PROFESSIONAL = "Professional"
    ENTERPRISE = "Enterprise"
    PREMIUM = "Premium"


class ValueCheck(StrEnum):
    """How a `registry_value` rule judges the value it reads."""

    EQUALS = "equals"
    RANGE = "range"
    KEY_HAS_VALUES = "key_has_values"


class SmtpCheck(StrEnum):
    """What an `smtp_probe` rule judges from the worker's probe of the SMTP port."""

    RELAY_REFUSED = "relay_refused"
    NO_AUTH_BEFORE_STARTTLS = "no_auth_before_starttls"
    CERTIFICATE_VALID = "certificate_valid"
    CERTIFICATE_NAMES_HOST = "certificate_names_host"


class Risk(StrEnum):
    """How much damage applying a rule can do (to the service or to security)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Condition(StrEnum):
    """When a rule applies; the operator-declared facts decide the last two."""

    ALWAYS = "always"
    INTEGRATED_AUTH = "integrated_auth"
    SQL_INTEGRATED = "sql_integrated"


class Tristate(StrEnum):
    """An operator-declared fact that discovery cannot read reliably."""

    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


class Arch(StrEnum):
    """Processor architecture of the Windows installation."""

    X64 = "x64"
    X86 = "x86"


class DomainRole(StrEnum):
    """Win32_ComputerSystem.DomainRole (0..5), by name."""

    STANDALONE_WORKSTATION = "standalone_workstation"
    MEMBER_WORKSTATION = "member_workstation"
    STANDALONE_SERVER = "standalone_server"
    MEMBER_SERVER = "member_server"
    BACKUP_DOMAIN_CONTROLLER = "backup_domain_controller"
    PRIMARY_DOMAIN_CONTROLLER = "primary_domain_controller"


class AgentMode(StrEnum):
    """What the agent is asked to do in one invocation."""

    DISCOVER = "discover"
    VERIFY = "verify"
    APPLY = "apply"
    ROLLBACK = "rollback"
    # Set a new service-account password on the account and every service running as it;
    # on a failed restart/health check the previous password is put back.
    ROTATE_PASSWORD = "rotate_password"  # noqa: S105 - a mode name, not a password


class AceType(StrEnum):
    """Access-control entry type; audit ACEs live in the SACL and are not our business."""

    ALLOW = "allow"
    DENY = "deny"


class AceFlag(StrEnum):
    """Inheritance and propagation flags of an ACE (the `inherited` bit is reported apart)."""

    CONTAINER_INHERIT = "container_inherit"
    OBJECT_INHERIT = "object_inherit"
    NO_PROPAGATE = "no_propagate"
    INHERIT_ONLY = "inherit_only"


class AccessName(StrEnum):
    """The guide's access words, normalised; `masks` turns them into numeric masks.

    The guide's "DENIED" is a `file_deny` rule with access READ_EXECUTE (deny ReadAndExecute).
    """

    READ = "READ"
    READ_WRITE = "READ_WRITE"
    READ_EXECUTE = "READ_EXECUTE"
    FULL = "FULL"


class RegistryScope(StrEnum):
    """Where a registry grant lands: on the key only, or inherited by its subkeys."""

    KEY_ONLY = "key_only"
    KEY_AND_SUBKEYS = "key_and_subkeys"


class Judge(StrEnum):
    """How a plan item is judged from the observed state (see `evaluate`)."""

    EFFECTIVE_ACCESS = "effective_access"
    EXPLICIT_ALLOW_ACE = "explicit_allow_ace"
    EXPLICIT_DENY_ACE = "explicit_deny_ace"
    ACCOUNT_ENABLED = "account_enabled"
    GROUP_EXISTS = "group_exists"
    GROUP_HAS_MEMBER = "group_has_member"
    RIGHT_HELD = "right_held"
    # An integrated-authentication right no exception covers: held is drift (harden does not remove it),
    # not held needs the operator's decision (lockdown.rules.exceptions).
    RIGHT_NOT_HELD = "right_not_held"
    SQL_LOGIN_AND_USER = "sql_login_and_user"
    SQL_PERMISSIONS = "sql_permissions"
    SERVICE_RUNS_AS = "service_runs_as"
    AV_EXCLUSION_COVERS = "av_exclusion_covers"
    SERVICE_STOPPED_DURING_JOB = "service_stopped_during_job"
    REGISTRY_VALUE_MATCHES = "registry_value_matches"
    ONLY_ALLOWED_PRINCIPALS = "only_allowed_principals"
    SMTP_PROBE = "smtp_probe"
    NO_ADVISORY_AFFECTS = "no_advisory_affects"
    ONLY_MANAGEMENT_NETWORKS = "only_management_networks"


class TargetKind(StrEnum):
    """What a resolved target names, so the agent picks the right handler."""

    FILE = "file"
    DIRECTORY = "directory"
    REGISTRY_KEY = "registry_key"
    USER = "user"
    GROUP = "group"
    MEMBERSHIP = "membership"
    RIGHT = "right"
    SQL_DATABASE = "sql_database"
    SERVICE = "service"
    AV_EXCLUSION = "av_exclusion"
    REGISTRY_VALUE = "registry_value"
    SMTP_PORT = "smtp_port"
    PRODUCT = "product"
    IIS_CONFIG = "iis_config"


class SqlGrantKind(StrEnum):
    """The guide's two SQL rows: a login+user is created, then permissions granted."""

    LOGIN = "login"
    PERMISSIONS = "permissions"


class PreflightCheck(StrEnum):
    """Pre-flight advice turned into checks the agent performs around an apply."""

    AV_EXCLUSION = "av_exclusion"
    WINDOWS_SEARCH_STOPPED = "windows_search_stopped"
    INDEXING_SERVICE_STOPPED = "indexing_service_stopped"


class WaiverScope(StrEnum):
    """Whether a waiver was granted for one server or for a whole customer."""

    SERVER = "server"
    CUSTOMER = "customer"
