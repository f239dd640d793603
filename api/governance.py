"""/api/v1/: governance — waivers (propose, approve by another MSP admin, revoke), alerts (read, acknowledge)
and the audit trail (MSP admins only).

The pages' selectors and services (lockdown.services.waiver_*, jobs.alerts.alert_acknowledge,
servers.selectors.audit_list) with the token's `Scope`, so every write is audited under the token.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime
from django_otp.plugins.otp_totp.models import TOTPDevice
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api.schema import ErrorSerializer
from api.serializers import ID_MAX
from api.views import NewestFirst, ScopedViewSet, _body
from jobs import selectors as job_selectors
from jobs.alerts import alert_acknowledge
from jobs.choices import AlertKind
from jobs.models import Alert
from lockdown import clock, selectors, services
from lockdown.choices import WaiverKind, WaiverStatus
from lockdown.forms import WaiverForm
from lockdown.models import Waiver
from lockdown.rules.exceptions import EXCEPTION_KEY
from lockdown.rules.vocabulary import WaiverScope
from servers import selectors as server_selectors
from servers.audit import REDACTED, SECRET_FIELD_NAMES
from servers.crypto import redact, redact_tokens
from servers.models import AuditEvent, Customer, Server
from servers.tenancy import Action, require

FORBIDDEN_READ = OpenApiResponse(ErrorSerializer, description="Your role or token may not read this")


def _username(user: Any) -> str | None:
    return user.get_username() if user is not None else None


def _id_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) > ID_MAX:
        raise exceptions.ValidationError({name: f"a {name} id"})
    return int(raw)


# --- Waivers -----------------------------------------------------------------------------------
class ConflictSerializer(serializers.Serializer[dict[str, Any]]):
    """One CIS or STIG control an exception's rights conflict with, as recorded when it was proposed."""

    framework = serializers.ChoiceField(choices=["cis", "stig"])
    id = serializers.CharField(help_text="As the framework numbers it: 2.2.4, WN22-UR-000020")
    title = serializers.CharField()
    benchmark = serializers.CharField(allow_null=True)
    version = serializers.CharField(allow_null=True)
    # DRF's metaclass takes declared fields off the class, so this does not shadow Field.source at run time.
    source = serializers.CharField(help_text="Where the mapping comes from (a URL)")  # type: ignore[assignment]


class WaiverSerializer(serializers.ModelSerializer[Waiver]):
    """One waiver (a rule not enforced) or exception (the integrated-authentication rights permitted), for one
    server or a whole customer, and its state."""

    kind = serializers.ChoiceField(choices=WaiverKind.choices, read_only=True)
    conflicts = ConflictSerializer(
        many=True, read_only=True, help_text="Exceptions: the CIS/STIG controls it permits conflicting with"
    )

    applies_to = serializers.SerializerMethodField(help_text="server: one server; customer: every server of it")
    server_name = serializers.SerializerMethodField(help_text="null for a customer-wide waiver")
    customer = serializers.SerializerMethodField(help_text="The customer it belongs to (the server's, or its own)")
    customer_name = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField(help_text="From its dates and now: it applies only while active")
    proposed_by = serializers.SerializerMethodField(help_text="Username; null: a deleted user")
    approved_by = serializers.SerializerMethodField(help_text="Username; null: not approved (or a deleted user)")
    revoked_by = serializers.SerializerMethodField(help_text="Username; null: not revoked (or a deleted user)")

    class Meta:
        model = Waiver
        fields = (
            "id",
            "kind",
            "rule_id",
            "conflicts",
            "applies_to",
            "server",
            "server_name",
            "customer",
            "customer_name",
            "status",
            "justification",
            "proposed_by",
            "proposed_at",
            "approved_by",
            "approved_at",
            "expires_at",
            "revoked_by",
            "revoked_at",
        )
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=[scope.value for scope in WaiverScope]))
    def get_applies_to(self, waiver: Waiver) -> str:
        return waiver.scope.value

    def get_server_name(self, waiver: Waiver) -> str | None:
        return waiver.server.name if waiver.server is not None else None

    def get_customer(self, waiver: Waiver) -> int:
        return waiver.owner_customer_id

    def get_customer_name(self, waiver: Waiver) -> str:
        owner = waiver.server.customer if waiver.server is not None else waiver.customer
        assert owner is not None  # exactly one of server and customer (a check constraint)
        return owner.name

    @extend_schema_field(serializers.ChoiceField(choices=WaiverStatus.choices))
    def get_status(self, waiver: Waiver) -> str:
        return waiver.status_at(self.context.get("now") or clock.now()).value

    def get_proposed_by(self, waiver: Waiver) -> str | None:
        return _username(waiver.proposed_by)

    def get_approved_by(self, waiver: Waiver) -> str | None:
        return _username(waiver.approved_by)

    def get_revoked_by(self, waiver: Waiver) -> str | None:
        return _username(waiver.revoked_by)


class WaiverProposeSerializer(serializers.Serializer[dict[str, Any]]):
    """The Propose a waiver form's fields, for one server or one customer (exactly one of them)."""

    server = serializers.IntegerField(
        min_value=1, max_value=ID_MAX, allow_null=True, default=None, help_text="One of your servers"
    )
    customer = serializers.IntegerField(
        min_value=1, max_value=ID_MAX, allow_null=True, default=None, help_text="Or one of your customers: every server"
    )
    kind = serializers.ChoiceField(
        choices=WaiverKind.choices,
        default=WaiverKind.WAIVER,
        help_text=f"waiver: one rule is not enforced; exception: the integrated-authentication rights are applied "
        f"(rule_id must be {EXCEPTION_KEY})",
    )
    rule_id = serializers.CharField(
        max_length=120, help_text=f"A rule of the effective profile version, or {EXCEPTION_KEY} for an exception"
    )
    justification = serializers.CharField(
        max_length=2000, help_text=f"Why the rule cannot be met (at least {services.MIN_JUSTIFICATION} characters)"
    )
    expires_at = serializers.DateTimeField(
        help_text=f"In the future, at most {services.MAX_WAIVER_DAYS} days away (no offset: UTC)"
    )

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if (data["server"] is None) == (data["customer"] is None):
            raise serializers.ValidationError("Name exactly one of server and customer.")
        return data


class WaiverApproveSerializer(serializers.Serializer[dict[str, Any]]):
    otp_code = serializers.CharField(
        max_length=12,
        required=False,
        allow_blank=True,
        default="",
        help_text="Your authenticator's current code: required when the installation enforces two-factor or you "
        "enrolled a device (the Approve page asks for a recent one too)",
    )


def _status_filter(waivers: QuerySet[Waiver], wanted: str, now: datetime) -> QuerySet[Waiver]:
    """The waivers whose `status_at(now)` is `wanted` (Waiver.status_at, as a query)."""
    live = Q(revoked_at__isnull=True, expires_at__gt=now)
    return waivers.filter(
        {
            WaiverStatus.REVOKED: Q(revoked_at__isnull=False),
            WaiverStatus.EXPIRED: Q(revoked_at__isnull=True, expires_at__lte=now),
            WaiverStatus.PENDING: live & Q(approved_at__isnull=True),
            WaiverStatus.ACTIVE: live & Q(approved_at__isnull=False),
        }[WaiverStatus(wanted)]
    )


def _second_factor(user: Any, code: str) -> None:
    """As the Approve page's `recent_second_factor`: when two-factor is enforced, or the user enrolled a device,
    approving needs a current code (a token alone must not hand out a waiver). django-otp throttles failures."""
    devices = list(TOTPDevice.objects.filter(user_id=user.pk, confirmed=True))
    if not devices and not settings.FLEET_REQUIRE_2FA:
        return
    if not devices:
        raise PermissionDenied("enrol an authenticator (Account → Two-factor) before approving a waiver")
    if not code:
        raise PermissionDenied("approving a waiver needs your authenticator's current code in otp_code")
    if not any(device.verify_token(code) for device in devices):
        raise PermissionDenied("that authenticator code is not valid (or was used already)")


@extend_schema_view(
    list=extend_schema(
        summary="Waivers of the customers you may see, newest first",
        parameters=[
            OpenApiParameter("customer", OpenApiTypes.INT, description="One customer's (its own and its servers')"),
            OpenApiParameter("server", OpenApiTypes.INT, description="One server's (not its customer's)"),
            OpenApiParameter("status", str, enum=WaiverStatus.values, description="Only waivers in this state"),
            OpenApiParameter("kind", str, enum=WaiverKind.values, description="Only waivers, or only exceptions"),
        ],
    ),
    retrieve=extend_schema(summary="One waiver"),
)
class WaiverViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = Waiver.objects.none()
    serializer_class = WaiverSerializer
    pagination_class = NewestFirst

    def get_queryset(self) -> QuerySet[Waiver]:
        if self.action != "list":
            return selectors.waiver_list(scope=self.scope())
        waivers = selectors.waiver_list(scope=self.scope(), customer_id=_id_param(self.request, "customer"))
        server = _id_param(self.request, "server")
        if server is not None:
            waivers = waivers.filter(server_id=server)
        wanted = self.request.query_params.get("status", "")
        if wanted:
            if wanted not in WaiverStatus.values:
                raise exceptions.ValidationError({"status": f"one of {', '.join(WaiverStatus.values)}"})
            waivers = _status_filter(waivers, wanted, clock.now())
        kind = self.request.query_params.get("kind", "")
        if kind:
            if kind not in WaiverKind.values:
                raise exceptions.ValidationError({"kind": f"one of {', '.join(WaiverKind.values)}"})
            waivers = waivers.filter(kind=kind)
        return waivers

    def _shown(self, waiver: Waiver, code: int = status.HTTP_200_OK) -> Response:
        fresh = selectors.waiver_get(scope=self.scope(), waiver_id=waiver.pk)
        return Response(WaiverSerializer(fresh, context=self.get_serializer_context()).data, status=code)

    @extend_schema(
        summary="Propose a waiver of one rule, or an exception for the integrated-authentication rights, for one "
        "server or one customer: it applies once an MSP admin other than you approves it",
        description="The Propose a waiver form's checks: the rule must be in the effective profile version (the "
        "server's, or for a customer its default's and those its servers follow), the justification long enough, "
        "the expiry in the future and within the limit. kind=exception takes only rule_id "
        f"{EXCEPTION_KEY} (and a waiver never takes it): the exception records the CIS/STIG controls the effective "
        "profile's integrated-authentication rights conflict with. A server or customer you do not see is 404.",
        request=WaiverProposeSerializer,
        responses={201: WaiverSerializer},
    )
    def create(self, request: Request) -> Response:
        scope = self.scope()
        data = _body(request, WaiverProposeSerializer)  # the subject is in the body: 400, then 404, then 403
        server: Server | None = None
        customer: Customer | None = None
        if data["server"] is not None:
            server = scope.filter(Server.objects.select_related("customer").filter(pk=data["server"])).first()
            if server is None:
                raise exceptions.NotFound()  # another customer's (or none): as if it did not exist
            require(scope, Action.PROPOSE_WAIVER, server.customer_id)
            version = selectors.effective_profile_version(server)
            allowed = selectors.rule_ids_for_server(server)
        else:
            customer = scope.filter(Customer.objects.filter(pk=data["customer"]), customer_field="").first()
            if customer is None:
                raise exceptions.NotFound()
            require(scope, Action.PROPOSE_WAIVER, customer.pk)
            version = selectors.customer_effective_profile_version(customer)
            allowed = selectors.rule_ids_for_customer(customer)
        _, exception_possible = selectors.exception_conflicts_for(server=server, customer=customer)
        if exception_possible:
            allowed |= {EXCEPTION_KEY}
        form = WaiverForm(
            {
                "kind": data["kind"],
                "rule_id": data["rule_id"],
                "justification": data["justification"],
                "expires_at": data["expires_at"].isoformat(),
            },
            allowed_rule_ids=allowed,
            version_label=version.label if version is not None else "no profile",
        )
        if not form.is_valid():
            raise exceptions.ValidationError(
                {field: [str(error) for error in errors] for field, errors in form.errors.items()}
            )
        try:
            waiver = services.waiver_propose(
                scope=scope,
                actor=self.actor(),
                server=server,
                customer=customer,
                allowed_rule_ids=allowed,
                **form.cleaned_data,
            )
        except services.WaiverError as refused:
            raise exceptions.ValidationError({"detail": str(refused)}) from None
        return self._shown(waiver, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Approve a pending waiver (MSP admins; never its proposer): it applies from now until it expires",
        description="403 for a role that may not approve, for the proposer (or an account the proposer created or "
        "reset) and without a valid `otp_code` when one is needed; 400 for a waiver that is not pending.",
        request=WaiverApproveSerializer,
        responses={200: WaiverSerializer},
    )
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        scope = self.scope()
        waiver: Waiver = self.get_object()
        require(scope, Action.APPROVE_WAIVER, waiver.owner_customer_id)
        actor = self.actor()
        refusal = services.approval_refusal(user_id=actor.user.pk if actor.user else None, waiver=waiver)
        if refusal:
            raise PermissionDenied(refusal)  # who you are, not what you sent (the service refuses it again)
        data = _body(request, WaiverApproveSerializer)
        _second_factor(actor.user, data["otp_code"])
        try:
            approved = services.waiver_approve(scope=scope, actor=actor, waiver=waiver)
        except services.WaiverError as refused:
            raise exceptions.ValidationError({"detail": str(refused)}) from None
        return self._shown(approved)

    @extend_schema(
        summary="Revoke a waiver (pending or active): the rule is judged again from the next verify",
        description="400 for a waiver already revoked.",
        request=None,
        responses={200: WaiverSerializer},
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        scope = self.scope()
        waiver: Waiver = self.get_object()
        require(scope, Action.PROPOSE_WAIVER, waiver.owner_customer_id)
        try:
            revoked = services.waiver_revoke(scope=scope, actor=self.actor(), waiver=waiver)
        except services.WaiverError as refused:
            raise exceptions.ValidationError({"detail": str(refused)}) from None
        return self._shown(revoked)


# --- Alerts ------------------------------------------------------------------------------------
class AlertRuleSerializer(serializers.Serializer[dict[str, Any]]):
    rule_id = serializers.CharField()
    target = serializers.CharField()
    status = serializers.CharField(help_text="What the verify found: drift or error")


class AlertSerializer(serializers.ModelSerializer[Alert]):
    """A compliance drop on one server. Open until a person acknowledges it or a later verify that sees the
    server recovered resolves it (`resolved_at`); there is no manual resolve."""

    customer_name = serializers.CharField(source="customer.name", read_only=True)
    kind = serializers.ChoiceField(choices=AlertKind.choices, read_only=True)
    open = serializers.SerializerMethodField(help_text="Neither acknowledged nor resolved")
    status_before = serializers.SerializerMethodField(help_text="The server's status before the drop")
    status_after = serializers.SerializerMethodField(help_text="Its status after the drop")
    rules = serializers.SerializerMethodField(help_text="The checks that dropped (the first 50)")
    rules_total = serializers.SerializerMethodField()
    acknowledged_by = serializers.SerializerMethodField(help_text="Username; null: not acknowledged (or deleted)")
    resolved_by_job = serializers.SerializerMethodField(help_text="The verify job that saw it recovered")

    class Meta:
        model = Alert
        fields = (
            "id",
            "kind",
            "server",
            "server_name",
            "customer",
            "customer_name",
            "message",
            "status_before",
            "status_after",
            "rules",
            "rules_total",
            "created_at",
            "open",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "resolved_by_job",
            "remediation_job",
        )
        read_only_fields = fields

    def get_open(self, alert: Alert) -> bool:
        return alert.acknowledged_at is None and alert.resolved_at is None

    def get_status_before(self, alert: Alert) -> str:
        return str(alert.details.get("status_before", ""))

    def get_status_after(self, alert: Alert) -> str:
        return str(alert.details.get("status_after", ""))

    @extend_schema_field(AlertRuleSerializer(many=True))
    def get_rules(self, alert: Alert) -> list[dict[str, str]]:
        return [
            {
                "rule_id": str(rule.get("rule_id", "")),
                "target": str(rule.get("target", "")),
                "status": str(rule.get("status", "")),
            }
            for rule in alert.details.get("rules", [])
            if isinstance(rule, Mapping)
        ]

    def get_rules_total(self, alert: Alert) -> int:
        total = alert.details.get("rules_total", 0)
        return total if isinstance(total, int) else 0

    def get_acknowledged_by(self, alert: Alert) -> str | None:
        return _username(alert.acknowledged_by)

    def get_resolved_by_job(self, alert: Alert) -> int | None:
        run = alert.resolved_by_run
        return run.job_id if run is not None else None


ALERT_SHOWS = ("open", "all")


@extend_schema_view(
    list=extend_schema(
        summary="Alerts of the customers you may see, newest first: the open ones unless ?show=all",
        parameters=[
            OpenApiParameter(
                "show", str, enum=list(ALERT_SHOWS), description="open (default): neither acknowledged nor resolved"
            ),
            OpenApiParameter("customer", OpenApiTypes.INT, description="One customer's"),
        ],
    ),
    retrieve=extend_schema(summary="One alert (open or not)"),
)
class AlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = Alert.objects.none()
    serializer_class = AlertSerializer
    pagination_class = NewestFirst

    def get_queryset(self) -> QuerySet[Alert]:
        show = "all"
        if self.action == "list":
            show = self.request.query_params.get("show", "open") or "open"
            if show not in ALERT_SHOWS:
                raise exceptions.ValidationError({"show": "open or all"})
        alerts = job_selectors.alert_list(scope=self.scope(), show=show).select_related("resolved_by_run")
        customer = _id_param(self.request, "customer") if self.action == "list" else None
        return alerts.filter(customer_id=customer) if customer is not None else alerts

    @extend_schema(
        summary="Acknowledge the alert: it leaves the open list (once; acknowledging again changes nothing)",
        request=None,
        responses={200: AlertSerializer},
    )
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str | None = None) -> Response:
        scope = self.scope()
        alert: Alert = self.get_object()
        require(scope, Action.EDIT_SERVERS, alert.customer_id)
        alert_acknowledge(scope=scope, actor=self.actor(), alert=alert)
        return Response(AlertSerializer(self.get_object()).data)


# --- The audit trail -----------------------------------------------------------------------------
def _masked(value: Any) -> Any:
    """`changes` as stored, with every secret-named field at any depth replaced (audit_record checks only the
    top level) and known secrets and authentication tokens cut out of the text (servers.crypto.redact)."""
    if isinstance(value, Mapping):
        return {str(key): REDACTED if _secret_name(str(key)) else _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    if isinstance(value, str):
        return redact_tokens(redact(value))
    return value


def _secret_name(key: str) -> bool:
    return key in SECRET_FIELD_NAMES or key.endswith("_encrypted")


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    """One audit event: who did what, when, from where, to which object, and the fields it changed."""

    actor = serializers.CharField(source="actor_name", help_text="The user (and the API token), or a system actor")
    object = serializers.CharField(source="object_repr", help_text="The object as it was named then")
    changes = serializers.SerializerMethodField(
        help_text="{field: [old, new]} or {field: value}; secrets never (shown as “[secret changed]”)"
    )

    class Meta:
        model = AuditEvent
        fields = (
            "id",
            "at",
            "actor",
            "source_ip",
            "action",
            "object_type",
            "object_id",
            "object",
            "customer",
            "customer_name",
            "changes",
        )
        read_only_fields = fields

    def get_changes(self, event: AuditEvent) -> dict[str, Any]:
        masked = _masked(event.changes)
        return masked if isinstance(masked, dict) else {"changes": masked}


def _when(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name, "")
    if not raw:
        return None
    try:
        parsed = parse_datetime(raw)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise exceptions.ValidationError({name: "an ISO 8601 date and time with its offset (…Z or +01:00)"})
    return parsed


@extend_schema_view(
    list=extend_schema(
        summary="The audit trail, newest first (MSP admins only)",
        description="The Audit log page's rows and filters. Every change made with a token is under "
        "“user (API token 'name', prefix)”.",
        parameters=[
            OpenApiParameter("action", str, description="Actions starting with this (waiver. : every waiver action)"),
            OpenApiParameter("actor", str, description="Actors whose name contains this"),
            OpenApiParameter("customer", OpenApiTypes.INT, description="One customer's events"),
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="At or after (with an offset)"),
            OpenApiParameter("before", OpenApiTypes.DATETIME, description="Before (with an offset)"),
        ],
        responses={200: AuditEventSerializer(many=True), 403: FORBIDDEN_READ},
    )
)
class AuditEventViewSet(mixins.ListModelMixin, ScopedViewSet):
    queryset = AuditEvent.objects.none()
    serializer_class = AuditEventSerializer
    pagination_class = NewestFirst

    def get_queryset(self) -> QuerySet[AuditEvent]:
        scope = self.scope()
        require(scope, Action.VIEW_AUDIT)  # as the page: the whole MSP scope's admins (a narrowed token is not)
        params = self.request.query_params
        return server_selectors.audit_list(
            scope=scope,
            actor=params.get("actor", "")[:150],
            action=params.get("action", "")[:64],
            customer_id=_id_param(self.request, "customer"),
            since=_when(self.request, "since"),
            before=_when(self.request, "before"),
        )
