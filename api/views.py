"""/api/v1/: the pages' selectors and services behind a token. The same `Scope` as the pages (narrowed by
the token), so there is no second permission system: other customers' objects are 404, a role that
may not act gets 403."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, pagination, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api.models import ApiToken
from api.serializers import (
    RULE_STATUSES,
    CustomerSerializer,
    HardenRequestSerializer,
    JobSerializer,
    RollbackRequestSerializer,
    RuleOutcomeSerializer,
    ServerSerializer,
)
from api.tokens import token_actor, token_scope
from jobs import selectors as job_selectors
from jobs.choices import JobKind
from jobs.models import Job
from jobs.services import JobOptions, JobRefused, job_create, maintenance_window_for
from lockdown import clock
from servers.choices import ServerStatus
from servers.models import Customer, Server
from servers.tenancy import Action, Scope, require


class Cursor(pagination.CursorPagination):
    page_size = 100
    max_page_size = 500
    page_size_query_param = "page_size"
    ordering = "id"


class NewestFirst(Cursor):
    ordering = "-id"


class Pages(pagination.PageNumberPagination):
    """For lists that are not rows (a server's outcomes are one JSON document): numbered pages."""

    page_size = 100
    max_page_size = 500
    page_size_query_param = "page_size"


class ScopedViewSet(viewsets.GenericViewSet[Any]):
    """Every queryset through the token's scope; PermissionDenied → 403 with its reason."""

    lookup_value_converter = "int"

    def scope(self) -> Scope:
        token = self.request.auth
        assert isinstance(token, ApiToken)
        cached: Scope | None = getattr(self.request, "_fleet_scope", None)
        if cached is None:
            cached = token_scope(token)
            self.request._fleet_scope = cached  # type: ignore[attr-defined]
        return cached

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        context["msp"] = self.scope().is_msp if isinstance(self.request.auth, ApiToken) else False
        return context

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, PermissionDenied):
            exc = exceptions.PermissionDenied(str(exc))
        return super().handle_exception(exc)


@extend_schema_view(list=extend_schema(summary="Customers you may see"), retrieve=extend_schema(summary="One customer"))
class CustomerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = Customer.objects.none()  # the schema's types; get_queryset is what runs
    serializer_class = CustomerSerializer
    pagination_class = Cursor

    def get_queryset(self) -> QuerySet[Customer]:
        return self.scope().filter(Customer.objects.all(), customer_field="").order_by("id")


@extend_schema_view(
    list=extend_schema(
        summary="Servers you may see, with their compliance",
        parameters=[
            OpenApiParameter("customer", int, description="Only this customer's servers"),
            OpenApiParameter("status", str, enum=ServerStatus.values, description="Only servers in this state"),
        ],
    ),
    retrieve=extend_schema(summary="One server: facts, compliance and whether it was assessed"),
)
class ServerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = Server.objects.none()
    serializer_class = ServerSerializer
    pagination_class = Cursor

    def get_queryset(self) -> QuerySet[Server]:
        servers = self.scope().filter(Server.objects.select_related("customer").prefetch_related("tags"))
        if self.action != "list":  # the filters are the list's (`status` of results/ is a rule's)
            return servers.order_by("id")
        customer = self.request.query_params.get("customer", "")
        if customer:
            if not customer.isdigit():
                raise exceptions.ValidationError({"customer": "a customer id"})
            servers = servers.filter(customer_id=int(customer))
        wanted = self.request.query_params.get("status", "")
        if wanted:
            if wanted not in ServerStatus.values:
                raise exceptions.ValidationError({"status": f"one of {', '.join(ServerStatus.values)}"})
            servers = servers.filter(status=wanted)
        return servers.order_by("id")

    @extend_schema(
        summary="The server's latest rule results (from its last verify), in the guide's order",
        parameters=[OpenApiParameter("status", str, enum=RULE_STATUSES, description="Only results in this state")],
        responses=RuleOutcomeSerializer(many=True),
    )
    @action(detail=True, methods=["get"], pagination_class=Pages, serializer_class=RuleOutcomeSerializer)
    def results(self, request: Request, pk: str | None = None) -> Response:
        server = self.get_object()
        wanted = request.query_params.get("status", "")
        if wanted and wanted not in RULE_STATUSES:
            raise exceptions.ValidationError({"status": f"one of {', '.join(RULE_STATUSES)}"})
        page = self.paginate_queryset(job_selectors.server_rule_outcomes(server, status=wanted))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def _server_for(self, action_needed: Action) -> Server:
        """The server of the URL if the token may act on it: 404 before 403, both before the body is read."""
        server: Server = self.get_object()
        require(self.scope(), action_needed, server.customer_id)
        return server

    @staticmethod
    def _options(request: Request, serializer: type[serializers.Serializer[Any]]) -> dict[str, Any]:
        """The JSON body's options, checked; no body at all means the defaults (`curl -X POST` with nothing)."""
        body = serializer(data=request.data)  # DRF reads no body (and no content type) as {}
        body.is_valid(raise_exception=True)
        return dict(body.validated_data)

    def _start(self, request: Request, server: Server, kind: JobKind, options: JobOptions, in_window: bool) -> Response:
        """A one-server job through the pages' `job_create`: the same refusals (lock, window, role)."""
        scope = self.scope()
        try:
            if in_window:
                not_before, not_after = maintenance_window_for([server], clock.now())
                options = dataclasses.replace(options, not_before=not_before, not_after=not_after)
            job = job_create(
                scope=scope,
                actor=token_actor(request.auth, request),  # type: ignore[arg-type]
                kind=kind,
                servers=[server],
                options=options,
                description=f"{JobKind(kind).label} {server.name} (API)",
            )
        except JobRefused as refused:
            raise exceptions.ValidationError({"detail": str(refused)}) from None
        shown = job_selectors.job_get(scope=scope, job_id=job.pk)
        return Response(
            JobSerializer(shown, context=self.get_serializer_context()).data, status=status.HTTP_202_ACCEPTED
        )

    @extend_schema(
        summary="Verify the server now (read-only on the host): starts a job",
        request=None,
        responses={202: JobSerializer},
    )
    @action(detail=True, methods=["post"])
    def verify(self, request: Request, pk: str | None = None) -> Response:
        server = self._server_for(Action.EDIT_SERVERS)
        return self._start(request, server, JobKind.VERIFY, JobOptions(), in_window=False)

    @extend_schema(
        summary="Harden the server (now, or in its customer's next maintenance window): starts a job",
        description="Mail is interrupted briefly while the MailEnable services restart; the host checks "
        "SMTP, POP and IMAP afterwards and undoes the run itself if they do not answer. A host locked by "
        "another harden or rollback is refused (400).",
        request=HardenRequestSerializer,
        responses={202: JobSerializer},
    )
    @action(detail=True, methods=["post"])
    def harden(self, request: Request, pk: str | None = None) -> Response:
        server = self._server_for(Action.HARDEN)
        data = self._options(request, HardenRequestSerializer)
        options = JobOptions(dry_run=data["dry_run"], reset_adopted_password=data["reset_adopted_password"])
        return self._start(
            request, server, JobKind.HARDEN, options, in_window=data["in_window"] and not data["dry_run"]
        )

    @extend_schema(
        summary="Roll back every change recorded on the server that is not rolled back yet: starts a job",
        request=RollbackRequestSerializer,
        responses={202: JobSerializer},
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, pk: str | None = None) -> Response:
        server = self._server_for(Action.HARDEN)
        data = self._options(request, RollbackRequestSerializer)
        return self._start(request, server, JobKind.ROLLBACK, JobOptions(), in_window=data["in_window"])


@extend_schema_view(
    list=extend_schema(summary="Jobs with at least one of your hosts"), retrieve=extend_schema(summary="One job")
)
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = Job.objects.none()
    serializer_class = JobSerializer
    pagination_class = NewestFirst

    def get_queryset(self) -> QuerySet[Job]:
        return job_selectors.job_list(scope=self.scope()).order_by("-id")
