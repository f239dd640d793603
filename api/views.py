"""/api/v1/: the pages' selectors and services behind a token. The same `Scope` as the pages (narrowed by
the token), so there is no second permission system: other customers' objects are 404, a role that
may not act gets 403."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms.models import model_to_dict
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, pagination, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api.models import ApiToken
from api.serializers import (
    RULE_STATUSES,
    CredentialBindSerializer,
    CustomerSerializer,
    HardenRequestSerializer,
    HostRunSerializer,
    JobCreateSerializer,
    JobLogSerializer,
    JobSerializer,
    RollbackRequestSerializer,
    RuleOutcomeSerializer,
    ServerCreateSerializer,
    ServerSerializer,
)
from api.tokens import token_actor, token_scope
from jobs import selectors as job_selectors
from jobs.choices import CanaryOrder, JobKind
from jobs.models import Job
from jobs.services import (
    JobOptions,
    JobRefused,
    action_for,
    job_cancel,
    job_continue,
    job_create,
    maintenance_window_for,
)
from jobs.templatetags.job_tags import job_stop_reason
from lockdown import clock
from servers import services as server_services
from servers.audit import Actor
from servers.choices import ServerStatus
from servers.forms import ServerForm
from servers.models import Credential, Customer, Server
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

    def actor(self) -> Actor:
        """Who the audit trail names: the token's user, through this token."""
        token = self.request.auth
        assert isinstance(token, ApiToken)
        return token_actor(token, self.request)

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        context["msp"] = self.scope().is_msp if isinstance(self.request.auth, ApiToken) else False
        return context

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, PermissionDenied):
            exc = exceptions.PermissionDenied(str(exc))
        if isinstance(exc, exceptions.ValidationError):
            exc = exceptions.ValidationError(flat_errors(exc.detail))
        return super().handle_exception(exc)


def _words(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {_words(value)}" for key, value in detail.items())
    if isinstance(detail, list | tuple):
        return " ".join(_words(item) for item in detail)
    return str(detail)


def flat_errors(detail: Any) -> dict[str, str]:
    """A rejected request's errors as the schema states them (api.schema.VALIDATION_ERROR): each field, or
    "detail" for the request as a whole, with why in one string (serializers and forms give lists)."""
    if not isinstance(detail, dict):
        return {"detail": _words(detail)}
    renamed = {"non_field_errors": "detail", "__all__": "detail"}
    return {renamed.get(str(key), str(key)): _words(value) for key, value in detail.items()}


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

    def _start(self, request: Request, server: Server, kind: JobKind, options: JobOptions, in_window: bool) -> Response:
        """A one-server job through the pages' `job_create`: the same refusals (lock, window, role)."""
        return _start_job(
            self,
            request,
            kind,
            [server],
            options,
            in_window=in_window,
            description=f"{JobKind(kind).label} {server.name} (API)",
        )

    @extend_schema(
        summary="Add a server (the Add server form's fields and checks)",
        description="Only an MSP admin binds a credential; anyone else's `credential` is ignored and the server "
        "is added without one. Then verify it: POST …/verify/.",
        request=ServerCreateSerializer,
        responses={201: ServerSerializer},
    )
    def create(self, request: Request) -> Response:
        scope = self.scope()
        data = _body(request, ServerCreateSerializer)  # the customer is in the body: 400, then 404, then 403
        if not scope.filter(Customer.objects.filter(pk=data["customer"]), customer_field="").exists():
            raise exceptions.NotFound()  # another customer's (or none): as if it did not exist
        require(scope, Action.EDIT_SERVERS, data["customer"])
        tags = data.pop("tags")
        form = ServerForm({**data, "tags_text": ", ".join(tags)}, scope=scope)
        if not form.is_valid():
            raise exceptions.ValidationError(
                {field: [str(error) for error in errors] for field, errors in form.errors.items()}
            )
        fields = {key: value for key, value in form.cleaned_data.items() if key != "tags_text"}
        server = server_services.server_create(
            scope=scope,
            actor=self.actor(),
            data=fields,
            tags=form.cleaned_data["tags_text"],
        )
        shown = self.get_queryset().get(pk=server.pk)
        return Response(
            ServerSerializer(shown, context=self.get_serializer_context()).data, status=status.HTTP_201_CREATED
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
        data = _body(request, HardenRequestSerializer)
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
        data = _body(request, RollbackRequestSerializer)
        return self._start(request, server, JobKind.ROLLBACK, JobOptions(), in_window=data["in_window"])

    @extend_schema(
        summary="Rotate the server's IME_SYSTEM password (a new random one, set on the host): starts a job",
        description="The MailEnable services that run as IME_SYSTEM restart. The password is never returned.",
        request=RollbackRequestSerializer,
        responses={202: JobSerializer},
    )
    @action(detail=True, methods=["post"], url_path="rotate-password")
    def rotate_password(self, request: Request, pk: str | None = None) -> Response:
        server = self._server_for(Action.HARDEN)
        data = _body(request, RollbackRequestSerializer)
        return self._start(request, server, JobKind.ROTATE_PASSWORD, JobOptions(), in_window=data["in_window"])

    @extend_schema(
        summary="Bind a credential to the server, or unbind it (null): MSP admins only",
        description="The credential must be one of the server's customer's. It is bound to the server's "
        "connection settings as they are now (an edit of the address, port, scheme or TLS settings by anyone "
        "who may not manage credentials unbinds it). The Edit server form's checks apply: Basic "
        "authentication only over HTTPS with certificate verification on.",
        request=CredentialBindSerializer,
        responses={200: ServerSerializer},
    )
    @action(detail=True, methods=["put"])
    def credential(self, request: Request, pk: str | None = None) -> Response:
        server = self._server_for(Action.MANAGE_CREDENTIALS)
        scope = self.scope()
        data = _body(request, CredentialBindSerializer)
        credential_id = data["credential"]
        if credential_id is not None and not scope.filter(Credential.objects.filter(pk=credential_id)).exists():
            raise exceptions.NotFound()
        # The Edit server form with the server's own values and the new credential: the same checks and
        # the same service (servers.binding through server_update), as if saved on the page.
        tags = ", ".join(sorted(server.tags.values_list("name", flat=True)))
        values = {**model_to_dict(server, fields=ServerForm.Meta.fields), "credential": credential_id or ""}
        form = ServerForm({**values, "tags_text": tags}, instance=server, scope=scope)
        if not form.is_valid():
            raise exceptions.ValidationError(
                {field: [str(error) for error in errors] for field, errors in form.errors.items()}
            )
        server_services.server_update(
            scope=scope,
            actor=self.actor(),
            server=server,
            data={key: value for key, value in form.cleaned_data.items() if key != "tags_text"},
            tags=form.cleaned_data["tags_text"],
        )
        shown = self.get_queryset().get(pk=server.pk)
        return Response(ServerSerializer(shown, context=self.get_serializer_context()).data)


def _body(request: Request, serializer: type[serializers.Serializer[Any]]) -> dict[str, Any]:
    """The JSON body, checked; no body at all means the defaults (`curl -X POST` with nothing)."""
    body = serializer(data=request.data)  # DRF reads no body (and no content type) as {}
    body.is_valid(raise_exception=True)
    return dict(body.validated_data)


def _start_job(
    view: ScopedViewSet,
    request: Request,
    kind: JobKind,
    servers: list[Server],
    options: JobOptions,
    *,
    in_window: bool,
    description: str,
    typed_confirmation: str = "",
) -> Response:
    """A job through the pages' `job_create`: the same refusals (lock, window, role, typed confirmation)."""
    scope = view.scope()
    try:
        if in_window:
            not_before, not_after = maintenance_window_for(servers, clock.now())
            options = dataclasses.replace(options, not_before=not_before, not_after=not_after)
        job = job_create(
            scope=scope,
            actor=view.actor(),
            kind=kind,
            servers=servers,
            options=options,
            description=description,
            typed_confirmation=typed_confirmation,
        )
    except JobRefused as refused:
        raise exceptions.ValidationError({"detail": str(refused)}) from None
    shown = job_selectors.job_get(scope=scope, job_id=job.pk)
    return Response(JobSerializer(shown, context=view.get_serializer_context()).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    list=extend_schema(summary="Jobs with at least one of your hosts"), retrieve=extend_schema(summary="One job")
)
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = Job.objects.none()
    serializer_class = JobSerializer
    pagination_class = NewestFirst

    def get_queryset(self) -> QuerySet[Job]:
        return job_selectors.job_list(scope=self.scope()).order_by("-id")

    @extend_schema(
        summary="Start a job over several servers, in waves (the New job page's options and refusals)",
        description="A harden or rollback of more servers than the installation's limit (not a dry run) is refused "
        "(400) until `typed_confirmation` holds the phrase the refusal names. A server you do not see is 404; "
        "a kind your role may not run on one of the servers' customers is 403.",
        request=JobCreateSerializer,
        responses={202: JobSerializer},
    )
    def create(self, request: Request) -> Response:
        scope = self.scope()
        data = _body(request, JobCreateSerializer)  # the servers are in the body: 400, then 404, then 403
        ids = set(data["servers"])
        servers = list(scope.filter(Server.objects.select_related("customer").filter(pk__in=ids)))
        if len(servers) < len(ids) or not set(data["canary_servers"]) <= ids:
            raise exceptions.NotFound()  # a server of another customer (or none): as if it did not exist
        kind = JobKind(data["kind"])
        for customer_id in {server.customer_id for server in servers}:
            require(scope, action_for(kind), customer_id)
        mutating_options = kind == JobKind.HARDEN
        options = JobOptions(
            dry_run=data["dry_run"] and mutating_options,
            canary_size=len(set(data["canary_servers"])) or data["canary_size"],
            canary_server_ids=tuple(data["canary_servers"]),
            canary_healthy_first=data["canary_order"] == CanaryOrder.HEALTHY_FIRST,
            pause_after_canary=data["pause_after_canary"],
            failure_threshold_pct=data["failure_threshold_pct"],
            max_in_flight=data["max_in_flight"],
            not_before=data["not_before"],
            reset_adopted_password=data["reset_adopted_password"] and mutating_options,
        )
        count = len(servers)
        return _start_job(
            self,
            request,
            kind,
            servers,
            options,
            in_window=data["in_window"] and not options.dry_run,
            description=f"{kind.label}: {count} server{'' if count == 1 else 's'} (API)",
            typed_confirmation=data["typed_confirmation"],
        )

    def _job(self) -> Job:
        job: Job = self.get_object()  # job_list's scope and counts; a malformed id is 404
        return job

    @extend_schema(
        summary="The job's hosts (only your customers'), in wave order",
        responses=HostRunSerializer(many=True),
    )
    @action(detail=True, methods=["get"], pagination_class=Pages, serializer_class=HostRunSerializer)
    def runs(self, request: Request, pk: str | None = None) -> Response:
        job = self._job()
        scope = self.scope()
        page = self.paginate_queryset(job_selectors.job_host_runs(scope=scope, job=job))
        context = {**self.get_serializer_context(), "stop_reason": job_stop_reason(job, msp=scope.is_msp)}
        return self.get_paginated_response(HostRunSerializer(page, many=True, context=context).data)

    @extend_schema(
        summary="The job's live log after a cursor: poll with ?after=<next_after> while `more` is true",
        parameters=[OpenApiParameter("after", int, description="The last line id you have (0: from the start)")],
        responses=JobLogSerializer,
    )
    @action(detail=True, methods=["get"], pagination_class=None, serializer_class=JobLogSerializer)
    def log(self, request: Request, pk: str | None = None) -> Response:
        job = self._job()
        raw = request.query_params.get("after", "0") or "0"
        if not raw.isdigit() or len(raw) > 18:
            raise exceptions.ValidationError({"after": "a log line id (0 or more)"})
        after = int(raw)
        events = job_selectors.job_events_after(scope=self.scope(), job=job, after=after, limit=job_selectors.LOG_PAGE)
        body = {
            "events": events,
            "next_after": events[-1].pk if events else after,
            "more": job.is_open or len(events) == job_selectors.LOG_PAGE,
        }
        return Response(JobLogSerializer(body).data)

    def _control(self, request: Request) -> Job:
        """A job the token may act on as a whole: 404 if it holds other customers' hosts, 403 for the role."""
        scope = self.scope()
        job = self._job()
        if not job_selectors.job_is_theirs(scope=scope, job=job):
            raise exceptions.NotFound()
        require(scope, action_for(JobKind(job.kind)))
        return job

    @extend_schema(
        summary="Cancel the job: queued hosts now, running ones between phases",
        request=None,
        responses={202: JobSerializer},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        job = self._control(request)
        job_cancel(scope=self.scope(), actor=self.actor(), job=job)
        return Response(JobSerializer(self._job(), context=self.get_serializer_context()).data, status=202)

    @extend_schema(
        summary="Continue a job paused after its canary wave (or stopped by the failure threshold)",
        request=None,
        responses={202: JobSerializer},
    )
    @action(detail=True, methods=["post"], url_path="continue", url_name="continue")
    def continue_(self, request: Request, pk: str | None = None) -> Response:
        job = self._control(request)
        try:
            job_continue(scope=self.scope(), actor=self.actor(), job=job)
        except JobRefused as refused:
            raise exceptions.ValidationError({"detail": str(refused)}) from None
        return Response(JobSerializer(self._job(), context=self.get_serializer_context()).data, status=202)
