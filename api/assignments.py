"""/api/v1/: the assignment hierarchy — every server's effective profile and where it comes from, the tag
assignments (server groups) and the MSP default. Each change answers the servers it moves; with
`?preview=true` it writes nothing and answers what it would move (lockdown.assignment.preview).

The pages' services (lockdown.services.tag_assignment_*, fleet_default_set) and the same `Scope`.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.serializers import ID_MAX
from api.views import Cursor, ScopedViewSet, _body
from lockdown import assignment, services
from lockdown.models import FleetDefault, ProfileVersion, TagAssignment
from lockdown.selectors import assignable_versions
from servers.models import Customer, Server, Tag
from servers.tenancy import Action, require

PREVIEW = OpenApiParameter(
    "preview",
    OpenApiTypes.BOOL,
    description="true: write nothing, answer the servers the change would move (200)",
)


class FollowedSerializer(serializers.Serializer[assignment.Effective]):
    """A version a server follows and where it comes from."""

    version = serializers.SerializerMethodField(help_text="The profile version's id; null: no profile yet")
    version_label = serializers.SerializerMethodField(help_text="slug vN")
    level = serializers.SerializerMethodField(help_text="Where it comes from: server, tag, customer, msp or builtin")
    source_text = serializers.CharField(help_text="Where it comes from, in the pages' words")
    tag = serializers.SerializerMethodField(help_text="The tag it comes from, when source is tag")
    excluded_from = serializers.SerializerMethodField(help_text="Tags whose assignment excludes this server")
    blocked_by = serializers.SerializerMethodField(help_text="server or customer when a block decided it")

    def get_version(self, e: assignment.Effective) -> int | None:
        return e.version.pk if e.version else None

    def get_version_label(self, e: assignment.Effective) -> str | None:
        return e.version.label if e.version else None

    def get_level(self, e: assignment.Effective) -> str:
        return e.resolved.source.value

    def get_tag(self, e: assignment.Effective) -> str | None:
        return e.resolved.rule.tag_name if e.resolved.rule else None

    def get_excluded_from(self, e: assignment.Effective) -> list[str]:
        return [rule.tag_name for rule in e.resolved.excluded_from]

    def get_blocked_by(self, e: assignment.Effective) -> str:
        return e.resolved.blocked_by


class EffectiveSerializer(serializers.Serializer[Any]):
    server = serializers.IntegerField(source="pk")
    server_name = serializers.CharField(source="name")
    customer = serializers.IntegerField(source="customer_id")
    customer_name = serializers.CharField(source="customer.name")
    follows = serializers.SerializerMethodField()

    @extend_schema_field(FollowedSerializer)
    def get_follows(self, server: Server) -> dict[str, Any]:
        return dict(FollowedSerializer(self.context["effective"][server.pk]).data)


class MoveSerializer(serializers.Serializer[Any]):
    """A server a change moves to another version, with its compliance now and as its last verify predicts."""

    server = serializers.IntegerField(source="server.pk")
    server_name = serializers.CharField(source="server.name")
    customer = serializers.IntegerField(source="server.customer_id")
    customer_name = serializers.CharField(source="server.customer.name")
    before = FollowedSerializer()
    after = FollowedSerializer()
    compliance_pct = serializers.FloatField(source="current_percent", allow_null=True)
    predicted_pct = serializers.FloatField(
        source="predicted.percent",
        allow_null=True,
        help_text="From the last verify: rules both versions define identically keep their results",
    )
    rules_to_verify = serializers.IntegerField(source="predicted.to_verify", help_text="New or changed rules")
    never_verified = serializers.BooleanField(source="predicted.never_verified")


class MovesSerializer(serializers.Serializer[dict[str, Any]]):
    preview = serializers.BooleanField(help_text="true: nothing was written")
    moves = MoveSerializer(many=True)


class TagAssignmentSerializer(serializers.ModelSerializer[TagAssignment]):
    tag = serializers.CharField(source="tag.name")
    customer = serializers.IntegerField(source="customer_id", allow_null=True, help_text="null: all customers")
    version = serializers.IntegerField(source="version_id")
    version_label = serializers.CharField(source="version.label")
    excluded = serializers.SerializerMethodField(help_text="Ids of the excluded servers")

    class Meta:
        model = TagAssignment
        fields = (
            "id",
            "tag",
            "customer",
            "version",
            "version_label",
            "precedence",
            "excluded",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    def get_excluded(self, a: TagAssignment) -> list[int]:
        return sorted(s.pk for s in a.excluded_servers.all())


class TagAssignmentChangedSerializer(MovesSerializer):
    assignment = TagAssignmentSerializer(allow_null=True, help_text="null in a preview")


class TagAssignmentWriteSerializer(serializers.Serializer[dict[str, Any]]):
    tag = serializers.SlugField(max_length=60, help_text="A tag's name")
    customer = serializers.IntegerField(
        min_value=1, max_value=ID_MAX, allow_null=True, default=None, help_text="One customer's servers; null: all"
    )
    version = serializers.IntegerField(min_value=1, max_value=ID_MAX, help_text="A profile version's id")
    precedence = serializers.IntegerField(min_value=1, max_value=10_000, default=100)
    excluded = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX), default=list, max_length=10_000
    )


class FleetDefaultSerializer(serializers.Serializer[dict[str, Any]]):
    version = serializers.IntegerField(
        min_value=1, max_value=ID_MAX, allow_null=True, help_text="null: the built-in profile's latest version"
    )


def _preview_flag(request: Request) -> bool:
    value = request.query_params.get("preview", "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise exceptions.ValidationError({"preview": "true or false"})
    return value in ("true", "1")


def _moves(moves: list[assignment.Move], preview: bool, **extra: Any) -> dict[str, Any]:
    return {"preview": preview, "moves": MoveSerializer(moves, many=True).data, **extra}


@extend_schema_view(
    list=extend_schema(
        summary="Every server you may see: the profile version it follows and where it comes from",
        parameters=[OpenApiParameter("customer", OpenApiTypes.INT, description="One customer's servers")],
    )
)
class EffectiveProfileViewSet(mixins.ListModelMixin, ScopedViewSet):
    queryset = Server.objects.none()
    serializer_class = EffectiveSerializer
    pagination_class = Cursor

    def get_queryset(self) -> QuerySet[Server]:
        servers = self.scope().filter(Server.objects.select_related("customer"))
        customer = self.request.query_params.get("customer")
        if customer is not None:
            if not customer.isdigit() or int(customer) > ID_MAX:
                raise exceptions.ValidationError({"customer": "a customer id"})
            servers = servers.filter(customer_id=int(customer))
        return servers

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        rows = list(page or [])
        effective = assignment.effective_for(Server.objects.filter(pk__in=[s.pk for s in rows]))
        data = EffectiveSerializer(rows, many=True, context={"effective": effective}).data
        return self.get_paginated_response(data)


@extend_schema_view(
    list=extend_schema(summary="Tag assignments (server groups): all to the MSP, a customer's own to its users"),
    retrieve=extend_schema(summary="One tag assignment"),
)
class TagAssignmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = TagAssignment.objects.none()
    serializer_class = TagAssignmentSerializer
    pagination_class = Cursor

    def get_queryset(self) -> QuerySet[TagAssignment]:
        return self.scope().filter(
            TagAssignment.objects.select_related("tag", "version__profile").prefetch_related("excluded_servers")
        )

    def _spec(self, request: Request) -> services.TagAssignmentSpec:
        data = _body(request, TagAssignmentWriteSerializer)
        scope = self.scope()
        customer = None
        if data["customer"] is not None:
            customer = scope.filter(Customer.objects.filter(pk=data["customer"]), customer_field="").first()
            if customer is None:
                raise exceptions.NotFound()
        tag = Tag.objects.filter(name=data["tag"]).first()
        if tag is None:
            raise exceptions.ValidationError({"tag": f"no tag {data['tag']}"})
        version = assignable_versions().filter(pk=data["version"]).first()
        if version is None:
            raise exceptions.ValidationError({"version": "no such profile version"})
        excluded = list(scope.filter(Server.objects.filter(pk__in=data["excluded"])))
        if len(excluded) != len(set(data["excluded"])):
            raise exceptions.ValidationError({"excluded": "a server id that is not one of your servers"})
        return services.TagAssignmentSpec(
            tag=tag, customer=customer, version=version, precedence=data["precedence"], excluded=tuple(excluded)
        )

    def _changed(self, request: Request, existing: TagAssignment | None, ok: int = status.HTTP_200_OK) -> Response:
        scope = self.scope()
        preview = _preview_flag(request)
        if existing is not None:  # a path id: 404 (get_object), then 403, then the body
            require(scope, Action.MANAGE_PROFILES, existing.customer_id)
        spec = self._spec(request)  # a body naming a customer: 400, then 404, then 403
        require(scope, Action.MANAGE_PROFILES, spec.customer)
        try:
            if preview:
                moves = services.tag_assignment_preview(scope=scope, spec=spec, existing=existing)
                return Response(_moves(moves, True, assignment=None))
            saved, moves = services.tag_assignment_save(scope=scope, actor=self.actor(), spec=spec, existing=existing)
        except services.AssignmentError as refused:
            field, _, why = str(refused).partition("': ")
            name = field.removeprefix("field '")
            raise exceptions.ValidationError({name: why} if why else {"detail": str(refused)}) from None
        saved = self.get_queryset().get(pk=saved.pk)
        return Response(_moves(moves, False, assignment=TagAssignmentSerializer(saved).data), status=ok)

    @extend_schema(
        summary="Assign a profile version to a tag (all customers' servers with it, or one customer's)",
        request=TagAssignmentWriteSerializer,
        parameters=[PREVIEW],
        responses={200: TagAssignmentChangedSerializer, 201: TagAssignmentChangedSerializer},
    )
    def create(self, request: Request) -> Response:
        return self._changed(request, None, ok=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change a tag assignment (its version, reach, precedence or exclusions)",
        request=TagAssignmentWriteSerializer,
        parameters=[PREVIEW],
        responses={200: TagAssignmentChangedSerializer},
    )
    def update(self, request: Request, pk: str | None = None) -> Response:
        return self._changed(request, self.get_object())

    @extend_schema(
        summary="Remove a tag assignment: its servers fall back to the next level",
        parameters=[PREVIEW],
        responses={200: MovesSerializer},
    )
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        existing: TagAssignment = self.get_object()
        scope = self.scope()
        preview = _preview_flag(request)
        require(scope, Action.MANAGE_PROFILES, existing.customer_id)
        if preview:
            return Response(_moves(services.tag_assignment_preview(scope=scope, spec=None, existing=existing), True))
        moves = services.tag_assignment_delete(scope=scope, actor=self.actor(), existing=existing)
        return Response(_moves(moves, False))


class FleetDefaultReadSerializer(serializers.Serializer[dict[str, Any]]):
    version = serializers.IntegerField(allow_null=True, help_text="null: the built-in profile's latest version")
    version_label = serializers.CharField(allow_null=True)


class FleetDefaultChangedSerializer(MovesSerializer):
    default = FleetDefaultReadSerializer()


def _fleet_default() -> dict[str, Any]:
    row = FleetDefault.objects.select_related("version__profile").filter(pk=1).first()
    version = row.version if row else None
    return {"version": version.pk if version else None, "version_label": version.label if version else None}


class FleetDefaultViewSet(ScopedViewSet):
    """The MSP default (one object, so api.urls mounts it without a router): read by any token (its profile
    concerns every customer that does not block it, so visible_profiles shows it to them too), set by MSP
    admins."""

    queryset = FleetDefault.objects.none()
    serializer_class = FleetDefaultReadSerializer
    pagination_class = None

    @extend_schema(summary="The MSP default profile version", responses={200: FleetDefaultReadSerializer})
    def retrieve(self, request: Request) -> Response:
        return Response(_fleet_default())

    @extend_schema(
        summary="Set the MSP default (null: the built-in profile's latest)",
        request=FleetDefaultSerializer,
        parameters=[PREVIEW],
        responses={200: FleetDefaultChangedSerializer},
    )
    def set_default(self, request: Request) -> Response:
        scope = self.scope()
        preview = _preview_flag(request)
        require(scope, Action.MANAGE_PROFILES)
        data = _body(request, FleetDefaultSerializer)
        version: ProfileVersion | None = None
        if data["version"] is not None:
            version = assignable_versions().filter(pk=data["version"]).first()
            if version is None:
                raise exceptions.ValidationError({"version": "no such profile version"})
        if preview:
            moves = assignment.preview(assignment.set_msp_default(version.pk if version else None))
        else:
            moves = services.fleet_default_set(scope=scope, actor=self.actor(), version=version)
        return Response(_moves(moves, preview, default=_fleet_default()))
