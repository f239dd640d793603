"""/api/v1/reports/: ask for a signed report, follow its build, download it and verify a signature.

The pages' services (reports.services.report_request, reports.signing.verdict_for) and forms
(ReportForm's period, VerifyReportForm's size caps) behind a token, with the token's `Scope`.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, parsers, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api.serializers import ID_MAX
from api.views import NewestFirst, ScopedViewSet, _body
from lockdown import clock
from reports import signing
from reports.forms import VerifyReportForm
from reports.models import Report, ReportFormat, ReportStatus
from reports.services import ReportRefused, report_request
from servers.maintenance import TIME_ZONE_CHOICES
from servers.models import Customer

TIME_ZONES = frozenset(value for value, _ in TIME_ZONE_CHOICES)
NOT_READY = OpenApiResponse(description="The report is not built (yet, or it failed): see its `status`")
FILE_CONTENT_TYPES = {ReportFormat.PDF: "application/pdf", ReportFormat.CSV: "text/csv; charset=utf-8"}


class ReportSerializer(serializers.ModelSerializer[Report]):
    """One report: its build status, and once `ready` its file's hash and the coverage it states."""

    customer = serializers.IntegerField(source="customer_id", read_only=True, allow_null=True)
    customer_name = serializers.SerializerMethodField(help_text="Empty for the whole fleet")
    files = serializers.SerializerMethodField(help_text="Download URLs once ready, else empty")

    class Meta:
        model = Report
        fields = (
            "id",
            "customer",
            "customer_name",
            "format",
            "period_start",
            "period_end",
            "tz_name",
            "status",
            "progress",
            "progress_note",
            "error",
            "created_at",
            "finished_at",
            "filename",
            "sha256",
            "server_count",
            "compliance_pct",
            "coverage_text",
            "files",
        )
        read_only_fields = fields

    def get_customer_name(self, report: Report) -> str:
        return report.customer_name

    def get_files(self, report: Report) -> dict[str, str]:
        if not report.is_ready:
            return {}
        base = f"/api/v1/reports/{report.pk}/"
        return {"report": base + "download/", "evidence": base + "evidence/", "signature": base + "signature/"}


class ReportCreateSerializer(serializers.Serializer[dict[str, Any]]):
    """As the Reports page asks: whose, which format, which days (both included), in which time zone."""

    customer = serializers.IntegerField(
        min_value=1,
        max_value=ID_MAX,
        allow_null=True,
        help_text="One of your customers; null: the whole fleet (MSP users only)",
    )
    format = serializers.ChoiceField(choices=ReportFormat.choices, default=ReportFormat.PDF)
    start = serializers.DateField(help_text="The first day")
    end = serializers.DateField(help_text="The last day (included; a day not over yet ends now)")
    time_zone = serializers.CharField(
        default="UTC",
        max_length=64,
        help_text="An IANA zone (Europe/Berlin): the days are its, and the report shows its times",
    )

    def validate_time_zone(self, value: str) -> str:
        if value not in TIME_ZONES:
            raise serializers.ValidationError("an IANA time zone name, e.g. Europe/Berlin")
        return value

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if data["end"] < data["start"]:
            raise serializers.ValidationError("The period must end on or after the day it starts.")
        return data


class VerifyRequestSerializer(serializers.Serializer[dict[str, Any]]):
    report = serializers.FileField(help_text="The PDF, CSV or evidence JSON")
    signature = serializers.FileField(required=False, help_text="Its .sig (a PDF carries its own signature)")


class VerdictSerializer(serializers.Serializer[dict[str, Any]]):
    verdict = serializers.ChoiceField(choices=["valid", "tampered", "mismatch", "unknown_key", "unreadable"])
    title = serializers.CharField()
    detail = serializers.CharField()
    key_id = serializers.CharField(help_text="This installation's signing key")


def _period(start: date, end: date, tz_name: str) -> tuple[datetime, datetime]:
    """The days in `tz_name` as [start of the first, end of the last], never past now (ReportForm.period)."""
    tz = ZoneInfo(tz_name)
    return datetime.combine(start, time.min, tzinfo=tz), min(datetime.combine(end, time.max, tzinfo=tz), clock.now())


@extend_schema_view(
    list=extend_schema(summary="Reports of the customers you may see, newest first"),
    retrieve=extend_schema(summary="One report: poll it until `status` is ready or failed"),
)
class ReportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = Report.objects.none()
    serializer_class = ReportSerializer
    pagination_class = NewestFirst

    def get_queryset(self) -> QuerySet[Report]:
        # A customer's users see their customers' reports only (scope.filter drops the fleet's, customer null).
        return self.scope().filter(Report.objects.defer("content", "evidence")).order_by("-id")

    @extend_schema(
        summary="Ask for a signed report: it is built in the background (202), then poll it",
        request=ReportCreateSerializer,
        responses={202: ReportSerializer},
    )
    def create(self, request: Request) -> Response:
        scope = self.scope()
        data = _body(request, ReportCreateSerializer)
        customer = None
        if data["customer"] is not None:
            customer = scope.filter(Customer.objects.filter(pk=data["customer"]), customer_field="").first()
            if customer is None:
                raise exceptions.NotFound()  # another customer's (or none): as if it did not exist
        start, end = _period(data["start"], data["end"], data["time_zone"])
        try:
            report = report_request(
                scope=scope,
                actor=self.actor(),
                customer=customer,
                fmt=ReportFormat(data["format"]),
                period_start=start,
                period_end=end,
                tz_name=data["time_zone"],
            )
        except ReportRefused as refused:
            raise exceptions.ValidationError({"detail": str(refused)}) from None
        return Response(ReportSerializer(report).data, status=status.HTTP_202_ACCEPTED)

    def _ready(self) -> Report:
        report: Report = self.get_object()
        if report.status != ReportStatus.READY:
            raise exceptions.NotFound(f"The report is {report.status}, not ready.")
        return Report.objects.get(pk=report.pk)  # with its files (the list defers them)

    @staticmethod
    def _file(data: bytes | memoryview, filename: str, content_type: str) -> HttpResponse:
        response = HttpResponse(bytes(data), content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["Cache-Control"] = "private, no-store"
        return response

    @extend_schema(
        summary="The report file (PDF or CSV), exactly as signed",
        responses={
            (200, "application/pdf"): OpenApiTypes.BINARY,
            (200, "text/csv"): OpenApiTypes.BINARY,
            404: NOT_READY,
        },
    )
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str | None = None) -> HttpResponse:
        report = self._ready()
        return self._file(report.content, report.filename, FILE_CONTENT_TYPES[ReportFormat(report.format)])

    @extend_schema(
        summary="The evidence JSON the report was built from, as signed",
        responses={(200, "application/json"): OpenApiTypes.OBJECT, 404: NOT_READY},
    )
    @action(detail=True, methods=["get"])
    def evidence(self, request: Request, pk: str | None = None) -> HttpResponse:
        report = self._ready()
        return self._file(report.evidence, report.evidence_filename, "application/json")

    @extend_schema(
        summary="The detached signature manifest (.sig, JSON) of the report and its evidence",
        responses={(200, "application/json"): OpenApiTypes.OBJECT, 404: NOT_READY},
    )
    @action(detail=True, methods=["get"])
    def signature(self, request: Request, pk: str | None = None) -> HttpResponse:
        report = self._ready()
        return self._file(report.signature.encode("ascii"), report.signature_filename, "application/json")

    @extend_schema(
        summary="Verify a report file (and its .sig) against this installation's signing key",
        description="The check of the Verify a report page and `manage.py verify_report`. Upload as "
        "multipart/form-data; a file that is not a report answers a verdict, not an error.",
        request={"multipart/form-data": VerifyRequestSerializer},
        responses={200: VerdictSerializer},
    )
    @action(detail=False, methods=["post"], parser_classes=[parsers.MultiPartParser])
    def verify(self, request: Request) -> Response:
        form = VerifyReportForm(request.POST, request.FILES)
        if not form.is_valid():
            raise exceptions.ValidationError(
                {field: [str(error) for error in errors] for field, errors in form.errors.items()}
            )
        upload = form.cleaned_data["report"]
        key = signing.installation_key()
        found = signing.verdict_for(
            b"".join(upload.chunks()), upload.name or "", form.cleaned_data["signature"], key.public_key_bytes
        )
        body = {"verdict": found.kind, "title": found.title, "detail": found.detail, "key_id": key.key_id}
        return Response(VerdictSerializer(body).data)
