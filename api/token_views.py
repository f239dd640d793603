"""The user's own API tokens: create (shown once), list, revoke."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST

from api.models import ApiToken
from api.tokens import MAX_TOKEN_DAYS, TokenRefused, token_issue, token_revoke
from servers.audit import Actor
from servers.models import Customer
from servers.tenancy import request_scope
from servers.twofactor import recent_second_factor


class TokenForm(forms.Form):
    name = forms.CharField(max_length=60, help_text="What uses it, e.g. “PSA ticket sync”.")
    days = forms.IntegerField(
        min_value=1, max_value=MAX_TOKEN_DAYS, initial=90, required=False, label="Expires after (days)",
        help_text="Empty: never (not recommended).",
    )  # fmt: skip
    read_only = forms.BooleanField(required=False, initial=True, label="Read-only (no jobs, no changes)")
    customer = forms.ModelChoiceField(
        queryset=Customer.objects.none(), required=False, empty_label="Every customer I may see",
        label="Only this customer",
    )  # fmt: skip


@sensitive_variables("issued")
@require_http_methods(["GET", "POST"])
@recent_second_factor
def token_list(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    form = TokenForm(request.POST or None)
    field = form.fields["customer"]
    assert isinstance(field, forms.ModelChoiceField)
    field.queryset = scope.filter(Customer.objects.order_by("name"), customer_field="")
    secret = ""
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                issued = token_issue(
                    scope=scope,
                    actor=Actor.from_request(request),
                    name=form.cleaned_data["name"],
                    days=form.cleaned_data["days"],
                    read_only=form.cleaned_data["read_only"],
                    customer=form.cleaned_data["customer"],
                )
            except TokenRefused as refused:
                form.add_error(None, str(refused))
                status = 400
            else:
                secret = issued.secret
                form = TokenForm()
                form.fields["customer"] = field
        else:
            status = 400
    tokens = ApiToken.objects.filter(user_id=int(request.user.pk or 0)).select_related("customer")
    response = render(request, "api/token_list.html", {"form": form, "tokens": tokens, "secret": secret}, status=status)
    if secret:
        response["Cache-Control"] = "no-store"
    return response


@require_POST
def token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, user_id=int(request.user.pk or 0))
    token_revoke(actor=Actor.from_request(request), token=token)
    messages.success(request, f"Token {token.name!r} revoked: it no longer works.")
    return redirect("api_token_list")
