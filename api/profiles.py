"""/api/v1/: the profile library — profiles and their versions as the pages show them, a version's rules,
its export (the YAML or JSON document the Export button gives) and the import of such a document.

The pages' selectors (`visible_profiles`: a customer's users see the profiles that concern it) and
services (`profile_import`: MSP admins; identical content creates nothing), and the same upload form
(size-capped, UTF-8, safe-loaded, validated rule by rule).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, parsers, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api.views import Cursor, ScopedViewSet
from lockdown import selectors, services
from lockdown.choices import ExportFormat
from lockdown.exchange import dump_document
from lockdown.forms import ProfileImportForm
from lockdown.models import Profile, ProfileVersion
from servers.tenancy import Action, require

EXPORT_CONTENT_TYPES = {ExportFormat.YAML: "application/yaml", ExportFormat.JSON: "application/json"}


class ProfileSerializer(serializers.ModelSerializer[Profile]):
    latest_version = serializers.IntegerField(
        source="latest_number", allow_null=True, help_text="The newest version's number; null: none yet"
    )
    version_count = serializers.IntegerField()

    class Meta:
        model = Profile
        fields = ("id", "slug", "name", "description", "builtin", "latest_version", "version_count", "created_at")
        read_only_fields = fields


class VersionSerializer(serializers.ModelSerializer[ProfileVersion]):
    profile_slug = serializers.CharField(source="profile.slug")
    version_label = serializers.CharField(source="label", help_text="slug vN")

    class Meta:
        model = ProfileVersion
        fields: tuple[str, ...] = (
            "id",
            "profile",
            "profile_slug",
            "number",
            "version_label",
            "content_hash",
            "change_note",
            "created_at",
        )
        read_only_fields: tuple[str, ...] = fields


class VersionDetailSerializer(VersionSerializer):
    rule_count = serializers.SerializerMethodField()
    rules = serializers.ListField(child=serializers.DictField(), help_text="The rules, as stored (and exported)")
    notes = serializers.ListField(child=serializers.CharField())

    class Meta(VersionSerializer.Meta):
        fields = (*VersionSerializer.Meta.fields, "rule_count", "rules", "notes")
        read_only_fields = fields

    def get_rule_count(self, version: ProfileVersion) -> int:
        return len(version.rules)


class ImportRequestSerializer(serializers.Serializer[dict[str, Any]]):
    file = serializers.FileField(help_text="A profile document, YAML (.yaml, .yml) or JSON (.json), UTF-8")


class ImportedSerializer(serializers.Serializer[Any]):
    version = VersionSerializer(help_text="The version holding the document's content")
    created_profile = serializers.BooleanField()
    created_version = serializers.BooleanField(help_text="false: the content was identical to this version")


@extend_schema_view(
    list=extend_schema(summary="Profiles you may see (a customer's users: those that concern their servers)"),
    retrieve=extend_schema(summary="One profile"),
)
class ProfileViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = Profile.objects.none()
    serializer_class = ProfileSerializer
    pagination_class = Cursor

    def get_queryset(self) -> QuerySet[Profile]:
        return selectors.profile_list(scope=self.scope())

    @extend_schema(
        summary="Import a profile document (a new version of the profile with its slug, or a new profile)",
        description="As the Import page: upload as multipart/form-data. Identical content creates nothing and "
        "answers 200 with the version that holds it; a new version or profile answers 201. The built-in "
        "profile cannot be imported over. MSP admins only.",
        request={"multipart/form-data": ImportRequestSerializer},
        responses={200: ImportedSerializer, 201: ImportedSerializer},
    )
    @action(detail=False, methods=["post"], url_path="import", parser_classes=[parsers.MultiPartParser])
    def import_document(self, request: Request) -> Response:
        scope = self.scope()
        require(scope, Action.MANAGE_PROFILES)  # before the upload is read
        form = ProfileImportForm(request.POST, request.FILES)
        if not form.is_valid() or form.document is None:
            raise exceptions.ValidationError({field: [str(e) for e in errors] for field, errors in form.errors.items()})
        upload = form.cleaned_data["file"]
        try:
            outcome = services.profile_import(
                scope=scope, actor=self.actor(), document=form.document, source_name=upload.name or ""
            )
        except services.ProfileServiceError as exc:
            raise exceptions.ValidationError({"file": str(exc)}) from None
        body = {
            "version": outcome.version,
            "created_profile": outcome.created_profile,
            "created_version": outcome.created_version,
        }
        answer = status.HTTP_201_CREATED if outcome.created_version else status.HTTP_200_OK
        return Response(ImportedSerializer(body).data, status=answer)


@extend_schema_view(
    list=extend_schema(
        summary="Versions of the profiles you may see, oldest first",
        parameters=[OpenApiParameter("profile", OpenApiTypes.INT, description="One profile's versions")],
    ),
    retrieve=extend_schema(summary="One version with its rules and notes", responses=VersionDetailSerializer),
)
class ProfileVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = ProfileVersion.objects.none()
    serializer_class = VersionSerializer
    pagination_class = Cursor

    def get_queryset(self) -> QuerySet[ProfileVersion]:
        visible = selectors.visible_profiles(scope=self.scope())
        versions = ProfileVersion.objects.select_related("profile").filter(profile__in=visible.values("pk"))
        if self.action == "list":
            versions = versions.defer("rules", "notes")  # the detail has them
            wanted = self.request.query_params.get("profile")
            if wanted is not None:
                if not wanted.isdigit() or len(wanted) > 10:
                    raise exceptions.ValidationError({"profile": "a profile id"})
                versions = versions.filter(profile_id=int(wanted))
        return versions

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        return VersionDetailSerializer if self.action == "retrieve" else VersionSerializer

    @extend_schema(
        summary="The version as a profile document (the Export button's file), to import elsewhere",
        parameters=[
            OpenApiParameter(
                "format", str, enum=[f.value for f in ExportFormat], description="yaml (the default) or json"
            )
        ],
        responses={(200, "application/yaml"): OpenApiTypes.OBJECT, (200, "application/json"): OpenApiTypes.OBJECT},
    )
    @action(detail=True, methods=["get"])
    def export(self, request: Request, pk: str | None = None) -> HttpResponse:
        version: ProfileVersion = self.get_object()
        wanted = request.query_params.get("format", ExportFormat.YAML)
        if wanted not in ExportFormat.values:
            raise exceptions.ValidationError({"format": f"one of {', '.join(ExportFormat.values)}"})
        fmt = ExportFormat(wanted)
        body = dump_document(selectors.version_document(version), fmt)
        response = HttpResponse(body, content_type=f"{EXPORT_CONTENT_TYPES[fmt]}; charset=utf-8")
        # The slug is [a-z0-9-] only (validated), so it is safe in the header.
        response["Content-Disposition"] = f'attachment; filename="{version.profile.slug}-v{version.number}.{fmt}"'
        return response
