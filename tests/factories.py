"""factory_boy factories, one per model that appears in a URL or a test story.

`URL_PARAMETER_FACTORIES` maps every URL keyword argument to the object it names; the
tenancy walker fails on a parameter that has no entry here instead of skipping the URL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import factory
from django.contrib.auth import get_user_model

from servers.choices import AuthMethod, Role, TLSVerify, WinRMScheme
from servers.models import Credential, Customer, Membership, Server, Tag

TEST_PASSWORD = "correct-horse-battery-staple-42"


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Customer {n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")

    @factory.post_generation
    def password(self, create: bool, extracted: str | None, **kwargs: Any) -> None:
        self.set_password(extracted or TEST_PASSWORD)
        if create:
            self.save(update_fields=["password"])


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    customer = None
    role = Role.VIEWER


class CredentialFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Credential
        skip_postgeneration_save = True

    customer = factory.SubFactory(CustomerFactory)
    name = factory.Sequence(lambda n: f"winrm-account-{n}")
    username = "Administrator"
    auth = AuthMethod.NTLM
    secret_encrypted = factory.LazyFunction(lambda: "")

    @factory.post_generation
    def secret(self, create: bool, extracted: str | None, **kwargs: Any) -> None:
        self.set_secret(extracted or "factory-secret-Pa55word!")
        if create:
            self.save(update_fields=["secret_encrypted"])


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"tag-{n}")


class ServerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Server

    customer = factory.SubFactory(CustomerFactory)
    name = factory.Sequence(lambda n: f"mail{n:03d}")
    address = factory.Sequence(lambda n: f"mail{n}.example.net")
    winrm_scheme = WinRMScheme.HTTPS
    winrm_port = 5986
    tls_verify = TLSVerify.SYSTEM
    credential = factory.LazyAttribute(lambda o: CredentialFactory(customer=o.customer))


@dataclass
class TenantObjects:
    """One customer's objects, as the tenancy walker needs them."""

    customer: Customer
    credential: Credential
    server: Server
    tag: Tag


def build_tenant(label: str) -> TenantObjects:
    customer = CustomerFactory(name=f"Tenant {label} Ltd")
    credential = CredentialFactory(customer=customer, name=f"cred-{label.lower()}-secretname")
    server = ServerFactory(
        customer=customer, name=f"mx-{label.lower()}-01", address=f"mx.{label.lower()}.example", credential=credential
    )
    tag = TagFactory(name=f"tag-{label.lower()}")
    server.tags.add(tag)
    return TenantObjects(customer=customer, credential=credential, server=server, tag=tag)


URL_PARAMETER_FACTORIES: dict[str, Callable[[TenantObjects], int]] = {
    "server_id": lambda tenant: tenant.server.pk,
    "customer_id": lambda tenant: tenant.customer.pk,
    "credential_id": lambda tenant: tenant.credential.pk,
}
