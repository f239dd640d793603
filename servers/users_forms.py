"""Forms for the users pages: validate what the admin typed; the services re-check and write."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError

from servers.choices import Role
from servers.models import Customer
from servers.users_services import membership_problem
from servers.validators import validate_no_control_characters

MSP_WIDE_LABEL = "MSP-wide (every customer)"


class MembershipForm(forms.Form):
    """Where (MSP-wide or one customer) and with which role; `user` is the member, if it exists."""

    customer = forms.ModelChoiceField(
        queryset=Customer.objects.all(),
        required=False,
        empty_label=MSP_WIDE_LABEL,
        label="Scope",
        help_text="MSP-wide: admin, operator or viewer. One customer: operator or viewer.",
    )
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)

    def __init__(self, *args: Any, user: Any | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "role" in cleaned and "customer" not in self.errors:
            problem = membership_problem(self.user, cleaned.get("customer"), cleaned["role"])
            if problem:
                raise ValidationError(problem)
        return cleaned


class UserCreateForm(MembershipForm):
    """A new user and its first membership. There is no password field: one is generated."""

    username = forms.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    email = forms.EmailField(required=False)
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)

    field_order = ("username", "email", "first_name", "last_name", "customer", "role")

    def clean_username(self) -> str:
        username: str = self.cleaned_data["username"].strip()
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise ValidationError("A user with that username already exists.")
        return username

    def clean_first_name(self) -> str:
        value: str = self.cleaned_data["first_name"].strip()
        validate_no_control_characters(value)
        return value

    def clean_last_name(self) -> str:
        value: str = self.cleaned_data["last_name"].strip()
        validate_no_control_characters(value)
        return value
