"""Forms of the reports app: asking for a report, choosing a time zone."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from lockdown import clock
from reports.models import ReportFormat, ReportFrequency
from servers.maintenance import TIME_ZONE_CHOICES
from servers.models import Customer

FLEET = "fleet"


class ReportForm(forms.Form):
    customer = forms.ChoiceField(label="For")
    format = forms.ChoiceField(choices=ReportFormat.choices, initial=ReportFormat.PDF)
    # type=date inputs take ISO dates only, whatever the locale's display format.
    start = forms.DateField(label="From (day)", widget=forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"}))
    end = forms.DateField(label="To (day, included)", widget=forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"}))

    def __init__(self, *args: Any, customers: QuerySet[Customer], allow_fleet: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.customers = {str(c.pk): c for c in customers}
        choices = [(FLEET, "The whole fleet")] if allow_fleet else []
        field = self.fields["customer"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = choices + [(pk, c.name) for pk, c in self.customers.items()]
        today = timezone.localdate(clock.now())
        self.fields["start"].initial = today - timedelta(days=30)
        self.fields["end"].initial = today

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end and end < start:
            raise forms.ValidationError("The period must end on or after the day it starts.")
        return data

    def chosen_customer(self) -> Customer | None:
        value = self.cleaned_data["customer"]
        return None if value == FLEET else self.customers[value]

    def period(self) -> tuple[datetime, datetime]:
        """The chosen days, in the user's time zone, as [start of first day, end of last day]."""
        tz = timezone.get_current_timezone()
        start = datetime.combine(self.cleaned_data["start"], time.min, tzinfo=tz)
        end = datetime.combine(self.cleaned_data["end"], time.max, tzinfo=tz)
        return start, min(end, clock.now())


class TimeZoneForm(forms.Form):
    time_zone = forms.ChoiceField(
        label="Time zone",
        choices=TIME_ZONE_CHOICES,
        help_text="Pages and reports show times in this zone.",
    )


# An external auditor has no account, so the verify page takes anonymous uploads: bounded, and said.
VERIFY_MAX_REPORT_BYTES = 20 * 1024 * 1024
VERIFY_MAX_SIGNATURE_BYTES = 64 * 1024


def _mib(size: int) -> str:
    return f"{size // (1024 * 1024)} MB" if size >= 1024 * 1024 else f"{size // 1024} KB"


class VerifyReportForm(forms.Form):
    report = forms.FileField(
        label="Report file (PDF, CSV or evidence JSON)",
        help_text=f"At most {_mib(VERIFY_MAX_REPORT_BYTES)}.",
    )
    signature = forms.FileField(
        label="Signature file (.sig)",
        required=False,
        help_text=f"At most {_mib(VERIFY_MAX_SIGNATURE_BYTES)}. A PDF carries its own signature; a CSV needs its .sig.",
    )

    def clean_report(self) -> Any:
        upload = self.cleaned_data["report"]
        if upload.size > VERIFY_MAX_REPORT_BYTES:
            raise forms.ValidationError(f"The file is larger than {_mib(VERIFY_MAX_REPORT_BYTES)}: no report is.")
        return upload

    def clean_signature(self) -> dict[str, Any] | None:
        import json

        upload = self.cleaned_data.get("signature")
        if not upload:
            return None
        if upload.size > VERIFY_MAX_SIGNATURE_BYTES:
            raise forms.ValidationError(f"A signature file is smaller than {_mib(VERIFY_MAX_SIGNATURE_BYTES)}.")
        try:
            manifest = json.loads(upload.read().decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise forms.ValidationError("This is not a signature file (it is not JSON).") from None
        if not isinstance(manifest, dict):
            raise forms.ValidationError("This is not a signature file (no manifest in it).")
        return manifest


class ReportScheduleForm(forms.Form):
    frequency = forms.ChoiceField(choices=ReportFrequency.choices, initial=ReportFrequency.MONTHLY)
    format = forms.ChoiceField(choices=ReportFormat.choices, initial=ReportFormat.PDF)
    recipients = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Recipients (one e-mail address per line)",
        help_text="Each receives the report and its signature file. No recipient: nothing is sent.",
    )

    def clean_recipients(self) -> list[str]:
        from django.core.validators import validate_email

        from reports.schedules import MAX_RECIPIENTS

        recipients = [line.strip() for line in self.cleaned_data["recipients"].splitlines() if line.strip()]
        for address in recipients:
            try:
                validate_email(address)
            except forms.ValidationError:
                raise forms.ValidationError(f"Not an e-mail address: {address}") from None
        if len(recipients) > MAX_RECIPIENTS:
            raise forms.ValidationError(f"At most {MAX_RECIPIENTS} recipients.")
        return list(dict.fromkeys(recipients))
