"""What the API returns: the pages' facts as JSON, no secret ever (credentials are ids only)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs.choices import CanaryOrder, JobKind
from jobs.models import HostRun, HostRunEvent, Job
from lockdown.rules.vocabulary import Risk, RuleAction, RuleStatus
from servers.assessment import assessment_of
from servers.choices import Declared, TLSVerify, WinRMScheme
from servers.maintenance import WEEKDAYS, parse_days
from servers.models import Customer, Server

ID_MAX = 2**63 - 1  # a database id (SQLite and PostgreSQL bigint): larger is no object, not an error

RULE_STATUSES = [status.value for status in RuleStatus]  # the schema's RuleStatusEnum (SPECTACULAR_SETTINGS)


class MaintenanceWindowSerializer(serializers.Serializer[Customer]):
    days = serializers.SerializerMethodField(help_text="Weekday names, Monday first")
    start = serializers.TimeField(source="maintenance_start", allow_null=True, help_text="Local time; null: no window")
    hours = serializers.IntegerField(source="maintenance_hours")
    time_zone = serializers.CharField(source="maintenance_timezone")

    def get_days(self, customer: Customer) -> list[str]:
        return [WEEKDAYS[day] for day in sorted(parse_days(customer.maintenance_days))]


class CustomerSerializer(serializers.ModelSerializer[Customer]):
    maintenance_window = MaintenanceWindowSerializer(source="*", read_only=True)

    class Meta:
        model = Customer
        fields = ("id", "name", "maintenance_window")


class AssessmentSerializer(serializers.Serializer[Any]):
    state = serializers.ChoiceField(choices=["assessed", "stale", "not_assessed"])
    cause = serializers.CharField()
    remedy = serializers.CharField()
    since = serializers.DateTimeField(allow_null=True)


class ServerSerializer(serializers.ModelSerializer[Server]):
    customer_name = serializers.CharField(source="customer.name", read_only=True)
    tags: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    assessment = serializers.SerializerMethodField()
    facts = serializers.JSONField(read_only=True, help_text="What discovery read from the host (untrusted input)")

    class Meta:
        model = Server
        fields = (
            "id",
            "name",
            "address",
            "customer",
            "customer_name",
            "winrm_scheme",
            "winrm_port",
            "tls_verify",
            "credential",
            "tags",
            "status",
            "compliance_pct",
            "compliance_counts",
            "last_verified_at",
            "assessment",
            "facts",
            "facts_updated_at",
        )
        read_only_fields = fields

    @extend_schema_field(AssessmentSerializer)
    def get_assessment(self, server: Server) -> dict[str, Any]:
        msp = bool(self.context.get("msp"))
        found = assessment_of(server, msp=msp)
        return {"state": found.state, "cause": found.cause, "remedy": found.remedy, "since": found.since}


class JobSerializer(serializers.ModelSerializer[Job]):
    title = serializers.SerializerMethodField(
        help_text="The description, or for a fleet job over other customers' hosts its kind and your count"
    )
    hosts = serializers.IntegerField(source="host_total", read_only=True, help_text="Your hosts in the job")
    hosts_failed = serializers.IntegerField(source="host_failed", read_only=True)

    class Meta:
        model = Job
        fields = ("id", "kind", "state", "dry_run", "title", "hosts", "hosts_failed", "created_at", "finished_at")
        read_only_fields = fields

    def get_title(self, job: Job) -> str:
        from jobs.templatetags.job_tags import job_title

        return job_title(job)


class RuleOutcomeSerializer(serializers.Serializer[dict[str, Any]]):
    """One rule on one resolved target from the server's latest verify (a stored `RuleOutcome`)."""

    rule_id = serializers.CharField(read_only=True)
    target = serializers.CharField(read_only=True, help_text="The resolved target (a path, a right, a setting)")
    section = serializers.CharField(read_only=True, help_text="The hardening guide's section")
    status = serializers.ChoiceField(choices=RULE_STATUSES, read_only=True)
    underlying_status = serializers.ChoiceField(
        choices=RULE_STATUSES,
        read_only=True,
        allow_null=True,
        default=None,
        help_text="For a waived rule, what the check found; otherwise null",
    )
    expected_text = serializers.CharField(read_only=True)
    observed_text = serializers.CharField(read_only=True, help_text="What the host showed (untrusted input)")
    reason = serializers.CharField(read_only=True, default="")
    risk = serializers.ChoiceField(choices=[risk.value for risk in Risk], read_only=True)
    risk_note = serializers.CharField(read_only=True, allow_null=True, default=None)
    action = serializers.ChoiceField(
        choices=[a.value for a in RuleAction],
        read_only=True,
        default=RuleAction.NONE.value,
        help_text="What harden does (or did) about it",
    )
    expected = serializers.DictField(
        read_only=True, default=dict, help_text="Evidence: the expected state as structured data (raw masks, SIDs)"
    )
    observed = serializers.DictField(
        read_only=True, default=dict, help_text="Evidence: what the host showed as structured data (untrusted input)"
    )
    waiver_justification = serializers.CharField(
        read_only=True, allow_null=True, default=None, help_text="For a waived rule, the waiver's justification"
    )


class HardenRequestSerializer(serializers.Serializer[dict[str, Any]]):
    """The single-server harden's options, as on the server page's Harden… form."""

    dry_run = serializers.BooleanField(default=False, help_text="Report what would change; change nothing")
    in_window = serializers.BooleanField(
        default=False,
        help_text="Start in the customer's next maintenance window (hosts not started before it closes are "
        "cancelled); refused when the customer has none. Ignored on a dry run.",
    )
    reset_adopted_password = serializers.BooleanField(
        default=False,
        help_text="Reset the password of an IME_SYSTEM that MEInstaller created (cannot be rolled back)",
    )


class RollbackRequestSerializer(serializers.Serializer[dict[str, Any]]):
    """The single-server rollback's options."""

    in_window = serializers.BooleanField(
        default=False, help_text="Start in the customer's next maintenance window; refused when it has none"
    )


class ServerCreateSerializer(serializers.Serializer[dict[str, Any]]):
    """Add a server: the Add server form's fields; the form's own checks then run on them (servers.forms)."""

    customer = serializers.IntegerField(min_value=1, max_value=ID_MAX, help_text="One of your customers")
    name = serializers.CharField(max_length=120)
    address = serializers.CharField(max_length=253, help_text="DNS name or IP address of the host")
    winrm_scheme = serializers.ChoiceField(choices=WinRMScheme.choices, default=WinRMScheme.HTTPS)
    winrm_port = serializers.IntegerField(min_value=1, max_value=65535, default=5986)
    tls_verify = serializers.ChoiceField(choices=TLSVerify.choices, default=TLSVerify.SYSTEM)
    tls_ca_bundle = serializers.CharField(required=False, allow_blank=True, default="", help_text="PEM")
    tls_fingerprint = serializers.CharField(required=False, allow_blank=True, default="", max_length=95)
    credential = serializers.IntegerField(
        min_value=1,
        max_value=ID_MAX,
        required=False,
        allow_null=True,
        default=None,
        help_text="A credential of the same customer; only an MSP admin binds one (ignored otherwise)",
    )
    smtp_port = serializers.IntegerField(min_value=1, max_value=65535, default=25)
    pop_port = serializers.IntegerField(min_value=1, max_value=65535, default=110)
    imap_port = serializers.IntegerField(min_value=1, max_value=65535, default=143)
    webmail_url = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    admin_url = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    web_self_signed = serializers.BooleanField(default=False)
    sql_integrated = serializers.ChoiceField(choices=Declared.choices, default=Declared.UNKNOWN)
    integrated_auth = serializers.ChoiceField(choices=Declared.choices, default=Declared.UNKNOWN)
    acknowledge_integrated_auth = serializers.BooleanField(
        default=False, help_text="Required with integrated_auth=yes (IME_SYSTEM gets SYSTEM-equivalent rights)"
    )
    notes = serializers.CharField(required=False, allow_blank=True, default="")
    tags = serializers.ListField(
        child=serializers.CharField(max_length=60), required=False, default=list, max_length=50
    )


class CredentialBindSerializer(serializers.Serializer[dict[str, Any]]):
    """The credential a server's jobs connect with (servers.binding)."""

    credential = serializers.IntegerField(
        min_value=1, max_value=ID_MAX, allow_null=True, help_text="A credential of the server's customer; null: none"
    )


FLEET_JOB_KINDS = [kind for kind in JobKind.values if kind != JobKind.SELFTEST]  # the self-test is one server's


class JobCreateSerializer(serializers.Serializer[dict[str, Any]]):
    """A job over several servers, with the options of the New job page (waves, canary, window)."""

    kind = serializers.ChoiceField(choices=FLEET_JOB_KINDS)
    servers = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX),
        min_length=1,
        max_length=5000,
        help_text="Server ids",
    )
    dry_run = serializers.BooleanField(default=False, help_text="Harden only: report what would change")
    canary_size = serializers.IntegerField(
        min_value=0, max_value=10_000, default=0, help_text="Hosts in the first wave (ignored with canary_servers)"
    )
    canary_servers = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX),
        required=False,
        default=list,
        max_length=5000,
        help_text="The first wave, chosen (each one of `servers`)",
    )
    canary_order = serializers.ChoiceField(
        choices=[CanaryOrder.HEALTHY_FIRST.value, CanaryOrder.FIRST.value],
        default=CanaryOrder.HEALTHY_FIRST.value,
        help_text="healthy_first: hosts whose last verify succeeded; first: by customer and name",
    )
    pause_after_canary = serializers.BooleanField(default=False, help_text="Wait for POST …/continue/")
    failure_threshold_pct = serializers.IntegerField(min_value=0, max_value=100, default=20)
    max_in_flight = serializers.IntegerField(min_value=1, max_value=500, default=20)
    not_before = serializers.DateTimeField(required=False, allow_null=True, default=None)
    in_window = serializers.BooleanField(
        default=False, help_text="In the customers' next maintenance window (overrides not_before)"
    )
    reset_adopted_password = serializers.BooleanField(default=False, help_text="Harden only")
    typed_confirmation = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=100,
        help_text="A harden or rollback of many servers (not a dry run) needs the phrase the refusal names, "
        "e.g. “harden 12 servers”",
    )


class HostRunSerializer(serializers.ModelSerializer[HostRun]):
    """One host of a job (only your customers' hosts are listed)."""

    server_name = serializers.CharField(read_only=True)
    customer_name = serializers.CharField(read_only=True)
    error = serializers.SerializerMethodField(help_text="Why it failed, in words (empty when it did not)")

    class Meta:
        model = HostRun
        fields = (
            "id",
            "server",
            "server_name",
            "customer",
            "customer_name",
            "state",
            "wave",
            "started_at",
            "finished_at",
            "error_kind",
            "error",
            "compliance_pct",
            "changes_made",
        )
        read_only_fields = fields

    def get_error(self, run: HostRun) -> str:
        from jobs.templatetags.job_tags import run_error

        return run_error(run, bool(self.context.get("msp")), str(self.context.get("stop_reason", "")))


class JobEventSerializer(serializers.ModelSerializer[HostRunEvent]):
    """One line of a job's live log."""

    server_name = serializers.CharField(source="host_run.server_name", read_only=True)

    class Meta:
        model = HostRunEvent
        fields = ("id", "at", "level", "server_name", "message")
        read_only_fields = fields


class JobLogSerializer(serializers.Serializer[dict[str, Any]]):
    events = JobEventSerializer(many=True)
    next_after = serializers.IntegerField(help_text="Pass as ?after= for the lines that follow")
    more = serializers.BooleanField(help_text="More lines are waiting now, or the job is still running")
