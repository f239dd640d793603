"""What the API returns: the pages' facts as JSON, no secret ever (credentials are ids only)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs.models import Job
from lockdown.rules.vocabulary import Risk, RuleStatus
from servers.assessment import assessment_of
from servers.maintenance import WEEKDAYS, parse_days
from servers.models import Customer, Server

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
