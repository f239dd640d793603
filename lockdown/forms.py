"""Forms validate what people type or upload (profile documents, assignments, waivers); views then call a service."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

from lockdown import clock
from lockdown.choices import ExportFormat, WaiverKind
from lockdown.exchange import decode_upload, guess_format, parse_document
from lockdown.models import Profile, ProfileVersion
from lockdown.rules import Profile as ProfileDocument
from lockdown.rules import ProfileError
from lockdown.rules.exceptions import EXCEPTION_KEY
from lockdown.rules.profile import MAX_PROFILE_BYTES
from lockdown.selectors import assignable_versions
from lockdown.services import (
    MAX_WAIVER_DAYS,
    MIN_JUSTIFICATION,
    TagAssignmentSpec,
    WaiverError,
    check_waiver_expiry,
)
from servers.models import Customer, Server, Tag
from servers.validators import validate_no_control_characters

_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9\-]{1,62}$")  # the same shape lockdown.rules.Profile accepts


def _one_line(value: str) -> str:
    value = value.strip()
    validate_no_control_characters(value)
    return value


class ProfileEditorForm(forms.Form):
    """The YAML editor: the whole document is validated on the server; nothing is saved on error."""

    text = forms.CharField(
        label="Profile (YAML)",
        strip=False,
        max_length=MAX_PROFILE_BYTES,
        widget=forms.Textarea(attrs={"rows": 30, "class": "code-editor", "spellcheck": "false"}),
        help_text="slug, name, version, notes and rules. The version label is ignored: saving makes a new version.",
    )
    change_note = forms.CharField(label="What changed", required=False, max_length=500)

    def __init__(self, *args: Any, profile: Profile | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.profile = profile
        self.document: ProfileDocument | None = None

    def clean_change_note(self) -> str:
        return _one_line(self.cleaned_data.get("change_note", ""))

    def clean_text(self) -> str:
        text: str = self.cleaned_data["text"]
        try:
            document = parse_document(text, ExportFormat.YAML)
        except ProfileError as exc:
            raise ValidationError(str(exc)) from None
        if self.profile is not None and document.slug != self.profile.slug:
            raise ValidationError(
                f"profile, field 'slug': this is {self.profile.slug!r}; keep the slug, or clone to make a new profile"
            )
        if self.profile is None and Profile.objects.filter(slug=document.slug).exists():
            raise ValidationError(f"profile, field 'slug': a profile called {document.slug!r} already exists")
        self.document = document
        return text


def read_upload_text(upload: UploadedFile[bytes]) -> str:
    """An uploaded document's text: at most FLEET_MAX_UPLOAD_BYTES, UTF-8 (a BOM is dropped)."""
    limit: int = settings.FLEET_MAX_UPLOAD_BYTES
    if upload.size is not None and upload.size > limit:
        raise ValidationError(f"The file is {upload.size:,} bytes; the limit is {limit:,} bytes.")
    raw = upload.read(limit + 1)
    if len(raw) > limit:
        raise ValidationError(f"The file is larger than the limit of {limit:,} bytes.")
    try:
        return decode_upload(raw)
    except ProfileError as exc:
        raise ValidationError(str(exc)) from None


class ProfileImportForm(forms.Form):
    """Upload a YAML or JSON profile: size-capped, UTF-8, safe-loaded, validated rule by rule."""

    file = forms.FileField(label="Profile file", help_text="YAML (.yaml, .yml) or JSON (.json), UTF-8.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.document: ProfileDocument | None = None

    def clean_file(self) -> UploadedFile[bytes]:
        upload: UploadedFile[bytes] = self.cleaned_data["file"]
        text = read_upload_text(upload)
        try:
            self.document = parse_document(text, guess_format(upload.name or "", text))
        except ProfileError as exc:
            raise ValidationError(str(exc)) from None
        return upload


class AdvisoryImportForm(forms.Form):
    """Upload a MailEnable advisory file (YAML or JSON): size-capped and UTF-8 here; the service validates it."""

    file = forms.FileField(label="Advisory file", help_text="YAML (.yaml, .yml) or JSON (.json), UTF-8.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.text: str | None = None

    def clean_file(self) -> UploadedFile[bytes]:
        upload: UploadedFile[bytes] = self.cleaned_data["file"]
        self.text = read_upload_text(upload)
        return upload


class ProfileCloneForm(forms.Form):
    """Name the new profile a version is cloned into."""

    slug = forms.SlugField(label="Slug", max_length=63, help_text="Lower-case letters, digits and dashes.")
    name = forms.CharField(label="Name", max_length=200)
    description = forms.CharField(label="Description", required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def clean_slug(self) -> str:
        slug: str = self.cleaned_data["slug"]
        if not _SLUG_RE.fullmatch(slug):
            raise ValidationError("Use 2 to 63 lower-case letters, digits and dashes, starting with a letter or digit.")
        if Profile.objects.filter(slug=slug).exists():
            raise ValidationError(f"A profile called {slug!r} already exists.")
        return slug

    def clean_name(self) -> str:
        name = _one_line(self.cleaned_data["name"])
        if not name:
            raise ValidationError("Enter a name.")
        return name


class VersionChoiceField(forms.ModelChoiceField[ProfileVersion]):
    def label_from_instance(self, obj: ProfileVersion) -> str:
        return f"{obj.profile.name} — version {obj.number}"


class ProfileAssignForm(forms.Form):
    """Pick a version of the library, or none (fall back to the level above); and, for a customer or a
    server, whether what is above reaches it (`block`: the checkbox's label and help, or None for none)."""

    version = VersionChoiceField(queryset=ProfileVersion.objects.none(), required=False, label="Profile version")
    block_inheritance = forms.BooleanField(required=False)

    def __init__(self, *args: Any, empty_label: str, block: tuple[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["version"]
        assert isinstance(field, VersionChoiceField)
        field.queryset = assignable_versions()
        field.empty_label = empty_label
        if block is None:
            del self.fields["block_inheritance"]
        else:
            self.fields["block_inheritance"].label, self.fields["block_inheritance"].help_text = block


class _ServerChoices(forms.ModelMultipleChoiceField[Server]):
    def label_from_instance(self, obj: Server) -> str:
        return f"{obj.customer.name} — {obj.name}"


class TagAssignmentForm(forms.Form):
    """A server group by tag: its version, its reach (all customers or one), its precedence, its exclusions."""

    tag = forms.ModelChoiceField(queryset=Tag.objects.all(), empty_label=None, label="Tag")
    customer = forms.ModelChoiceField(
        queryset=Customer.objects.all(),
        required=False,
        empty_label="All customers",
        label="Servers of",
        help_text="One customer's servers with the tag only; its assignment wins over an all-customers one.",
    )
    version = VersionChoiceField(queryset=ProfileVersion.objects.none(), empty_label=None, label="Profile version")
    precedence = forms.IntegerField(
        min_value=1,
        max_value=10_000,
        initial=100,
        help_text="When a server has two assigned tags, the lower number wins.",
    )
    excluded = _ServerChoices(
        queryset=Server.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Excluded servers",
        help_text="They keep what they follow without this assignment.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        version = self.fields["version"]
        assert isinstance(version, VersionChoiceField)
        version.queryset = assignable_versions()
        excluded = self.fields["excluded"]
        assert isinstance(excluded, _ServerChoices)
        excluded.queryset = (
            Server.objects.filter(tags__isnull=False)
            .distinct()
            .select_related("customer")
            .order_by("customer__name", "name")
        )

    def spec(self) -> TagAssignmentSpec:
        data = self.cleaned_data
        return TagAssignmentSpec(
            tag=data["tag"],
            customer=data["customer"],
            version=data["version"],
            precedence=data["precedence"],
            excluded=tuple(data["excluded"]),
        )


class _RuleChoiceField(forms.ChoiceField):
    """A drop-down whose value `WaiverForm.clean_rule_id` checks (and names, when it is not in the profile)."""

    def valid_value(self, value: Any) -> bool:
        return True


class WaiverForm(forms.Form):
    """Propose a waiver of one rule of the effective profile version, or an exception permitting the
    integrated-authentication rights (kind exception: only `EXCEPTION_KEY`)."""

    kind = forms.ChoiceField(
        label="Kind",
        choices=WaiverKind.choices,
        initial=WaiverKind.WAIVER,
        required=False,  # left out: a waiver (as before there were exceptions)
        help_text="A waiver: one rule is not enforced. An exception: the integrated-authentication rights, which "
        "conflict with CIS and STIG controls, are applied on a server declared to use integrated authentication.",
    )
    rule_id = forms.CharField(
        label="Rule id",
        max_length=120,
        help_text="e.g. user_right.se_tcb_privilege (the id shown beside the rule on the server page)",
    )
    justification = forms.CharField(
        label="Justification",
        min_length=MIN_JUSTIFICATION,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=f"Why this rule cannot be met here (at least {MIN_JUSTIFICATION} characters).",
    )
    expires_at = forms.DateTimeField(
        label="Expires at (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text=f"In the future, at most {MAX_WAIVER_DAYS} days away.",
    )

    def __init__(
        self,
        *args: Any,
        allowed_rule_ids: frozenset[str],
        version_label: str,
        rules: dict[str, tuple[str, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.allowed_rule_ids = allowed_rule_ids
        self.version_label = version_label
        if rules:
            # A drop-down of the effective profile's rules, by section, instead of an id typed from memory.
            # Its value is checked by clean_rule_id as a typed one would be.
            sections: dict[str, list[tuple[str, str]]] = {}
            for rule_id, (section, description) in sorted(rules.items(), key=lambda item: (item[1][0], item[0])):
                text = f"{rule_id} — {description}" if description else rule_id
                sections.setdefault(section, []).append((rule_id, text[:140]))
            if EXCEPTION_KEY in allowed_rule_ids:
                sections["Exception (kind exception only)"] = [
                    (EXCEPTION_KEY, f"{EXCEPTION_KEY} — IME_SYSTEM's integrated-authentication rights, as one unit")
                ]
            self.fields["rule_id"] = _RuleChoiceField(
                label="Rule",
                choices=[("", "Choose a rule…"), *sections.items()],
                help_text=f"The rules of the effective profile ({version_label}).",
            )

    def clean_rule_id(self) -> str:
        rule_id = _one_line(self.cleaned_data["rule_id"])
        if rule_id not in self.allowed_rule_ids:
            raise ValidationError(f"No rule {rule_id[:120]!r} in the effective profile ({self.version_label}).")
        return rule_id

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind, rule_id = data.get("kind") or WaiverKind.WAIVER, data.get("rule_id")
        if kind == WaiverKind.EXCEPTION and rule_id is not None and rule_id != EXCEPTION_KEY:
            self.add_error(
                "rule_id",
                f"An exception covers only the integrated-authentication rights ({EXCEPTION_KEY}); waive any other "
                "rule instead.",
            )
        elif kind == WaiverKind.WAIVER and rule_id == EXCEPTION_KEY:
            self.add_error("rule_id", f"{EXCEPTION_KEY} is not a rule to waive: choose the kind Exception.")
        data["kind"] = WaiverKind(kind)
        return data

    def clean_justification(self) -> str:
        text: str = self.cleaned_data["justification"].strip()
        if any(ord(ch) < 32 and ch not in "\n\r\t" for ch in text):
            raise ValidationError("The justification contains control characters.")
        if len(text) < MIN_JUSTIFICATION:
            raise ValidationError(f"Write at least {MIN_JUSTIFICATION} characters.")
        return text

    def clean_expires_at(self) -> datetime:
        expires_at: datetime = self.cleaned_data["expires_at"]
        try:
            check_waiver_expiry(expires_at, clock.now())
        except WaiverError as exc:
            raise ValidationError(f"{str(exc)[0].upper()}{str(exc)[1:]}.") from None
        return expires_at
