"""Forms validate what people type, then the views call a service. No logic in save()."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone

from servers.choices import AuthMethod, Declared, TLSVerify, WinRMScheme
from servers.maintenance import TIME_ZONE_CHOICES, WEEKDAY_CHOICES, days_text, parse_days
from servers.models import Credential, Customer, Server
from servers.tenancy import Action, Scope
from servers.validators import (
    normalise_fingerprint,
    validate_fingerprint,
    validate_host_address,
    validate_no_control_characters,
    validate_pem_bundle,
)

INTEGRATED_AUTH_ACK_LABEL = (
    "I understand this grants IME_SYSTEM SeTcbPrivilege and SeCreateTokenPrivilege (SYSTEM-equivalent)"
)
_TAG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")
_USERNAME = re.compile(r"^[^\x00-\x1f\x7f\"/\[\]:;|=,+*?<>]{1,104}$")


def parse_tags(text: str) -> list[str]:
    tags = sorted({part.strip().lower() for part in re.split(r"[,\s]+", text) if part.strip()})
    bad = [tag for tag in tags if not _TAG.match(tag)]
    if bad:
        raise ValidationError(
            "Tags are lowercase letters, digits, '-' and '_' (at most 60): %(bad)s", params={"bad": ", ".join(bad)}
        )
    return tags


class CustomerForm(forms.ModelForm[Customer]):
    # Days by name, Monday first (the same numbering as the verify schedule's); stored as '5,6'.
    maintenance_days = forms.TypedMultipleChoiceField(
        choices=WEEKDAY_CHOICES,
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Maintenance window days",
        help_text="Days on which a change that interrupts mail may start.",
    )
    maintenance_timezone = forms.ChoiceField(
        choices=TIME_ZONE_CHOICES, initial="UTC", label="Maintenance window time zone"
    )

    class Meta:
        model = Customer
        fields: ClassVar = [
            "name",
            "notes",
            "maintenance_days",
            "maintenance_start",
            "maintenance_hours",
            "maintenance_timezone",
            "management_networks",
        ]
        labels: ClassVar = {
            "maintenance_start": "Maintenance window starts at",
            "maintenance_hours": "Maintenance window length (hours)",
        }
        widgets: ClassVar = {
            "maintenance_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "management_networks": forms.Textarea(attrs={"rows": 3}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The model stores '' for every day; the checkboxes show each day ticked.
        stored = self.instance.maintenance_days if self.instance.pk else ""
        self.initial["maintenance_days"] = [str(day) for day in sorted(parse_days(stored))]

    def clean_management_networks(self) -> str:
        from remote.networks import parse_networks

        lines = [line.strip() for line in self.cleaned_data.get("management_networks", "").splitlines() if line.strip()]
        try:
            parse_networks(lines)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        return "\n".join(lines)

    def clean_maintenance_days(self) -> str:
        days = set(self.cleaned_data.get("maintenance_days") or [])
        if not days:
            raise ValidationError("Tick at least one day (all seven for every day).")
        return days_text(days)

    def clean_maintenance_hours(self) -> int:
        hours: int = self.cleaned_data.get("maintenance_hours") or 4
        if not 1 <= hours <= 24:
            raise ValidationError("A window lasts 1 to 24 hours.")
        return hours

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        validate_no_control_characters(name)
        if not name:
            raise ValidationError("Enter a name.")
        return name


class CredentialForm(forms.ModelForm[Credential]):
    """Create or replace a credential. The secret field is write-only: never rendered back."""

    secret = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        max_length=256,
        help_text="Stored encrypted. It is never shown again; type a new one to replace it.",
    )

    class Meta:
        model = Credential
        fields: ClassVar = ["customer", "name", "username", "auth"]

    def __init__(self, *args: Any, scope: Scope, replacing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["customer"].queryset = scope.filter(Customer.objects.all(), customer_field="")  # type: ignore[attr-defined]
        if replacing:
            self.fields["customer"].disabled = True
            self.fields["secret"].required = False
            self.fields["secret"].help_text = "Leave empty to keep the stored password."

    def clean_username(self) -> str:
        username: str = self.cleaned_data["username"].strip()
        account = username.split("\\", 1)[-1].split("@", 1)[0]
        if not _USERNAME.match(account) or username.count("\\") > 1:
            raise ValidationError("Enter an account as NAME, HOST\\NAME, DOMAIN\\NAME or name@domain.")
        return username

    def clean_auth(self) -> str:
        from servers.services import basic_refusal

        auth: str = self.cleaned_data["auth"]
        refusal = basic_refusal(self.instance, auth)
        if refusal:
            raise ValidationError(refusal)
        return auth

    def clean_secret(self) -> str:
        secret: str = self.cleaned_data.get("secret") or ""
        if "\x00" in secret:
            raise ValidationError("The password contains a NUL character.")
        return secret


class ServerForm(forms.ModelForm[Server]):
    """Add or edit a server; also validates each row of a CSV import."""

    tags_text = forms.CharField(label="Tags", required=False, help_text="Comma-separated, e.g. plesk, eu-west")
    webmail_url = forms.URLField(label="Webmail URL", required=False, assume_scheme="https", max_length=200)
    admin_url = forms.URLField(label="Web admin URL", required=False, assume_scheme="https", max_length=200)
    acknowledge_integrated_auth = forms.BooleanField(
        label=INTEGRATED_AUTH_ACK_LABEL,
        required=False,
        help_text="Required when integrated authentication is set to yes; who and when are recorded.",
    )

    class Meta:
        model = Server
        fields: ClassVar = [
            "customer",
            "name",
            "address",
            "winrm_scheme",
            "winrm_port",
            "tls_verify",
            "tls_ca_bundle",
            "tls_fingerprint",
            "credential",
            "smtp_port",
            "pop_port",
            "imap_port",
            "webmail_url",
            "admin_url",
            "web_self_signed",
            "sql_integrated",
            "integrated_auth",
            "notes",
        ]
        widgets: ClassVar = {
            "tls_ca_bundle": forms.Textarea(attrs={"rows": 4}),
            "notes": forms.Textarea(attrs={"rows": 3}),
        }
        # Django would say "Winrm scheme", "Tls verify" (issue 12, smaller items).
        labels: ClassVar = {
            "winrm_scheme": "WinRM scheme",
            "winrm_port": "WinRM port",
            "tls_verify": "TLS verification",
            "tls_ca_bundle": "TLS CA bundle (PEM)",
            "tls_fingerprint": "TLS certificate fingerprint (SHA-256)",
            "smtp_port": "SMTP port",
            "pop_port": "POP3 port",
            "imap_port": "IMAP port",
            "webmail_url": "Webmail URL",
            "admin_url": "Web admin URL",
        }

    def __init__(self, *args: Any, scope: Scope, initial_customer: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scope = scope
        order = list(self.fields)
        order.remove("acknowledge_integrated_auth")
        order.insert(order.index("integrated_auth") + 1, "acknowledge_integrated_auth")
        self.order_fields(order)
        allowed = scope.customers_where(Action.EDIT_SERVERS)
        customers = Customer.objects.all()
        if allowed is not None:
            customers = customers.filter(pk__in=sorted(allowed))
        self.fields["customer"].queryset = customers  # type: ignore[attr-defined]
        if initial_customer is not None and not self.instance.pk and customers.filter(pk=initial_customer).exists():
            self.initial["customer"] = initial_customer
        self._offer_credentials()
        for port_field in ("winrm_port", "smtp_port", "pop_port", "imap_port"):
            self.fields[port_field].widget.attrs.update({"min": 1, "max": 65535})
        # servers.binding: only an MSP admin chooses where a credential goes
        self.may_bind = scope.can(Action.MANAGE_CREDENTIALS, self.instance.customer_id if self.instance.pk else None)
        if not self.may_bind:
            credential = self.fields["credential"]
            credential.disabled = True  # the submitted value is ignored: the stored one is kept
            credential.help_text = (
                "Only an MSP admin chooses the credential. Changing the address, port, scheme or TLS settings "
                "of a server with a credential unbinds it until an MSP admin binds it again."
            )
        if self.instance.pk and not self.is_bound:
            self.initial["tags_text"] = ", ".join(tag.name for tag in self.instance.tags.all())

    def _offer_credentials(self) -> None:
        """Credentials of the server's customer only (a server takes one of its own customer's: `clean`).

        Editing, or adding for a chosen customer: that customer's. Adding with no customer chosen: all the
        user may see, grouped by customer so the drop-down says whose each is.
        """
        field = self.fields["credential"]
        assert isinstance(field, forms.ModelChoiceField)
        credentials = self.scope.filter(Credential.objects.select_related("customer")).order_by(
            "customer__name", "name"
        )
        customer_id = self.instance.customer_id if self.instance.pk else self.initial.get("customer")
        if customer_id is not None and not self.is_bound:
            credentials = credentials.filter(customer_id=customer_id)
        field.queryset = credentials
        groups: dict[str, list[tuple[int, str]]] = {}
        for credential in credentials:
            groups.setdefault(credential.customer.name, []).append((credential.pk, str(credential)))
        field.choices = [("", "---------"), *((name, options) for name, options in groups.items())]

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        validate_no_control_characters(name)
        if not name:
            raise ValidationError("Enter a name.")
        return name

    def clean_address(self) -> str:
        address: str = self.cleaned_data["address"].strip()
        validate_host_address(address)
        return address.lower()

    def clean_tls_fingerprint(self) -> str:
        value: str = self.cleaned_data.get("tls_fingerprint", "")
        if value:
            validate_fingerprint(value)
            return normalise_fingerprint(value)
        return ""

    def clean_tags_text(self) -> list[str]:
        return parse_tags(self.cleaned_data.get("tags_text", ""))

    def _check_port(self, name: str) -> None:
        port = self.cleaned_data.get(name)
        if port is not None and not 1 <= port <= 65535:
            self.add_error(name, "Ports are 1 to 65535.")

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        for port_field in ("winrm_port", "smtp_port", "pop_port", "imap_port"):
            self._check_port(port_field)
        customer: Customer | None = data.get("customer")
        credential: Credential | None = data.get("credential")
        scheme = data.get("winrm_scheme")
        verify = data.get("tls_verify")
        name = data.get("name")
        if customer is not None and name:
            clash = Server.objects.filter(customer=customer, name__iexact=name).exclude(pk=self.instance.pk)
            if clash.exists():
                self.add_error("name", f"{customer.name} already has a server called {name}.")
        if credential is not None and customer is not None and credential.customer_id != customer.pk:
            self.add_error("credential", "Choose a credential of the same customer.")
        basic = credential is not None and credential.auth == AuthMethod.BASIC
        if basic and (scheme != WinRMScheme.HTTPS or verify == TLSVerify.OFF):
            self.add_error(
                "credential", "Basic authentication is allowed only over HTTPS with certificate verification on."
            )
        if scheme == WinRMScheme.HTTPS:
            if verify == TLSVerify.CA_BUNDLE:
                bundle = data.get("tls_ca_bundle", "")
                try:
                    validate_pem_bundle(bundle)
                except ValidationError as exc:
                    self.add_error("tls_ca_bundle", exc)
            if verify == TLSVerify.PINNED and not data.get("tls_fingerprint"):
                self.add_error("tls_fingerprint", "Enter the certificate's SHA-256 fingerprint to pin it.")
        self._clean_integrated_auth(data)
        return data

    def _clean_integrated_auth(self, data: dict[str, Any]) -> None:
        """integrated_auth=yes makes IME_SYSTEM SYSTEM-equivalent: it needs an explicit, recorded acknowledgement.

        The acknowledgement (who, when) goes into cleaned_data and onto the instance being
        edited; turning integrated_auth off clears it, so turning it on again asks again.
        """
        # self.instance still holds the stored values here (_post_clean copies the form data later).
        stored = self.instance
        already = (
            stored.pk is not None
            and stored.integrated_auth == Declared.YES
            and stored.integrated_auth_acknowledged_at is not None
        )
        if data.get("integrated_auth") == Declared.YES:
            if already:
                return
            if not data.get("acknowledge_integrated_auth"):
                self.add_error(
                    "acknowledge_integrated_auth",
                    "Integrated authentication gives IME_SYSTEM SeTcbPrivilege and SeCreateTokenPrivilege "
                    "(SYSTEM-equivalent): tick the acknowledgement to declare it.",
                )
                return
            user = get_user_model().objects.filter(pk=self.scope.user_id).first() if self.scope.user_id else None
            acknowledged: tuple[Any, Any] = (user, timezone.now())
        else:
            acknowledged = (None, None)
        data["integrated_auth_acknowledged_by"], data["integrated_auth_acknowledged_at"] = acknowledged
        stored.integrated_auth_acknowledged_by, stored.integrated_auth_acknowledged_at = acknowledged


class ServerImportForm(forms.Form):
    file = forms.FileField(label="CSV file", help_text="UTF-8, comma-separated, with a header row.")
