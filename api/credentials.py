"""/api/v1/credentials/: the WinRM accounts, MSP admins only, and their passwords write-only.

DANGER: the request bodies of create and update carry an administrator password in clear. It goes
straight into the pages' `CredentialForm` (the same checks) and `credential_create` /
`credential_update` (encrypted, audited as "[secret changed]"), and no answer ever holds it nor its
ciphertext: the serializer below names its fields, `secret` is a request field only, and
`sensitive_variables` keeps the body out of an error report's frames.

As the Credentials pages: the list and a new credential need `manage_credentials` on the whole MSP
(403 for any other token, whatever it names: they are fleet-wide); one credential is its customer's
object, so another customer's is 404 and a visible one the role may not manage is 403 (servers.tenancy).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, ProtectedError, QuerySet
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.serializers import ID_MAX
from api.views import Cursor, ScopedViewSet, _body
from servers import selectors
from servers import services as server_services
from servers.choices import AuthMethod
from servers.forms import CredentialForm
from servers.models import Credential, Customer, Server
from servers.tenancy import Action, require

WRITE_ONLY_HELP = (
    "The password, stored encrypted (Fernet) and never returned by any operation; whitespace is kept as typed"
)


class CredentialServerSerializer(serializers.ModelSerializer[Server]):
    """A server that uses the credential."""

    class Meta:
        model = Server
        fields = ("id", "name")
        read_only_fields = fields


class CredentialSerializer(serializers.ModelSerializer[Credential]):
    """A credential as the Credentials page shows it: never its password, never its ciphertext."""

    customer_name = serializers.CharField(source="customer.name", read_only=True)
    servers = CredentialServerSerializer(many=True, read_only=True, help_text="The servers that use it")
    secret_changed_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When the password was last set or replaced"
    )

    class Meta:
        model = Credential
        # An explicit list: `secret_encrypted` must never be added here (test_api_credentials checks it).
        fields = (
            "id",
            "customer",
            "customer_name",
            "name",
            "username",
            "auth",
            "servers",
            "created_at",
            "secret_changed_at",
        )
        read_only_fields = fields


class CredentialUpdateSerializer(serializers.Serializer[dict[str, Any]]):
    """Replace a credential's fields, and its password if `secret` is given (the Edit / replace form)."""

    name = serializers.CharField(max_length=120)
    username = serializers.CharField(max_length=256, help_text="NAME, HOST\\NAME, DOMAIN\\NAME or name@domain")
    auth = serializers.ChoiceField(
        choices=AuthMethod.choices,
        default=AuthMethod.NTLM,
        help_text="basic only where every server using it is HTTPS with certificate verification on",
    )
    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        default="",
        trim_whitespace=False,
        max_length=256,
        help_text=WRITE_ONLY_HELP + ". Empty or absent: keep the stored one.",
    )


class CredentialCreateSerializer(CredentialUpdateSerializer):
    """A new credential of one customer (the Add credential form)."""

    customer = serializers.IntegerField(min_value=1, max_value=ID_MAX, help_text="The customer whose servers use it")
    secret = serializers.CharField(write_only=True, trim_whitespace=False, max_length=256, help_text=WRITE_ONLY_HELP)


def _form_errors(form: CredentialForm) -> exceptions.ValidationError:
    return exceptions.ValidationError(
        {field: [str(error) for error in errors] for field, errors in form.errors.items()}
    )


@extend_schema_view(
    list=extend_schema(summary="Every customer's credentials (MSP admins only; never a password)"),
    retrieve=extend_schema(summary="One credential (MSP admins only; never its password)"),
)
class CredentialViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = Credential.objects.none()
    serializer_class = CredentialSerializer
    pagination_class = Cursor
    reads_need_a_role = True  # api.schema: a GET here can answer 403 too

    def get_queryset(self) -> QuerySet[Credential]:
        servers = Prefetch("servers", queryset=Server.objects.only("id", "name", "credential_id").order_by("id"))
        return selectors.credential_list(scope=self.scope()).prefetch_related(servers).order_by("id")

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        require(self.scope(), Action.MANAGE_CREDENTIALS)  # the Credentials page's check: MSP admins
        return super().list(request, *args, **kwargs)

    def _credential(self) -> Credential:
        """The credential of the URL if the token may manage it: 404 before 403, both before the body."""
        credential: Credential = self.get_object()
        require(self.scope(), Action.MANAGE_CREDENTIALS, credential.customer_id)
        return credential

    def _shown(self, credential: Credential) -> dict[str, Any]:
        return dict(CredentialSerializer(self.get_queryset().get(pk=credential.pk)).data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(self._shown(self._credential()))

    @extend_schema(
        summary="Store a credential (MSP admins only): its password is encrypted and never shown again",
        request=CredentialCreateSerializer,
        responses={201: CredentialSerializer},
    )
    @method_decorator(sensitive_variables("data", "form"))
    def create(self, request: Request) -> Response:
        scope = self.scope()
        require(scope, Action.MANAGE_CREDENTIALS)  # fleet-wide: 403 before the body is read
        data = _body(request, CredentialCreateSerializer)
        customer = scope.filter(Customer.objects.filter(pk=data["customer"]), customer_field="").first()
        if customer is None:
            raise exceptions.NotFound()
        require(scope, Action.MANAGE_CREDENTIALS, customer.pk)
        form = CredentialForm({**data, "customer": customer.pk}, scope=scope)
        if not form.is_valid():
            raise _form_errors(form)
        credential = server_services.credential_create(
            scope=scope,
            actor=self.actor(),
            customer=customer,
            name=form.cleaned_data["name"],
            username=form.cleaned_data["username"],
            auth=form.cleaned_data["auth"],
            secret=form.cleaned_data["secret"],
        )
        return Response(self._shown(credential), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change a credential's name, username or authentication, and replace its password if given",
        description="The customer cannot change. `auth: basic` is refused (400) while a server uses the "
        "credential without HTTPS and certificate verification.",
        request=CredentialUpdateSerializer,
        responses={200: CredentialSerializer},
    )
    @method_decorator(sensitive_variables("data", "form"))
    def update(self, request: Request, pk: str | None = None) -> Response:
        credential = self._credential()
        data = _body(request, CredentialUpdateSerializer)
        form = CredentialForm(
            {**data, "customer": credential.customer_id}, instance=credential, scope=self.scope(), replacing=True
        )
        if not form.is_valid():
            raise _form_errors(form)
        server_services.credential_update(
            scope=self.scope(),
            actor=self.actor(),
            credential=credential,
            data=form.cleaned_data,
            secret=form.cleaned_data.get("secret", ""),
        )
        return Response(self._shown(credential))

    @extend_schema(
        summary="Delete a credential no server uses (400 while servers still use it)",
        responses={204: None},
    )
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        credential = self._credential()
        try:
            server_services.credential_delete(scope=self.scope(), actor=self.actor(), credential=credential)
        except ProtectedError:
            raise exceptions.ValidationError(
                {"detail": f"Credential {credential.name} is used by servers; assign them another first."}
            ) from None
        return Response(status=status.HTTP_204_NO_CONTENT)
