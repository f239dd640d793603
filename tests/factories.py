"""factory_boy factories, one per model that appears in a URL or a test story.

`URL_PARAMETER_FACTORIES` maps every URL keyword argument to the object it names; the
tenancy walker fails on a parameter that has no entry here instead of skipping the URL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import factory
from django.contrib.auth import get_user_model

from lockdown import clock as lockdown_clock
from lockdown.exchange import content_hash
from lockdown.models import Profile, ProfileVersion, Waiver
from servers.binding import bind
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
        skip_postgeneration_save = True

    customer = factory.SubFactory(CustomerFactory)
    name = factory.Sequence(lambda n: f"mail{n:03d}")
    address = factory.Sequence(lambda n: f"mail{n}.example.net")
    winrm_scheme = WinRMScheme.HTTPS
    winrm_port = 5986
    tls_verify = TLSVerify.SYSTEM
    credential = factory.LazyAttribute(lambda o: CredentialFactory(customer=o.customer))

    @factory.post_generation
    def bound(self, create: bool, extracted: bool | None, **kwargs: Any) -> None:
        """Bound as an MSP admin saving the server would (servers.binding); `bound=False` leaves it unbound."""
        if extracted is not False:
            bind(self)
            if create:
                self.save(update_fields=["credential_binding"])


# --- Lockdown profiles and waivers -----------------------------------------------------------
TENANT_RULE_ID = "user_right.ime_system.service_logon"


def sample_rule(rule_id: str = TENANT_RULE_ID, **overrides: Any) -> dict[str, Any]:
    """One valid rule as stored JSON (a user right), for small test profiles."""
    rule: dict[str, Any] = {
        "id": rule_id,
        "type": "user_right",
        "section": "User Rights",
        "description": "IME_SYSTEM may log on as a service.",
        "expected": "IME_SYSTEM holds SeServiceLogonRight.",
        "right": "SeServiceLogonRight",
        "principal": "IME_SYSTEM",
    }
    rule.update(overrides)
    return rule


def stored_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rules validated and dumped the way versions store them (defaults filled in)."""
    from lockdown.exchange import document_content
    from lockdown.rules.profile import profile_from_data

    document = profile_from_data({"slug": "factory", "name": "factory", "version": "1", "rules": rules})
    return document_content(document)[0]


class ProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Profile
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"profile-{n}")
    name = factory.Sequence(lambda n: f"Profile {n}")


class ProfileVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProfileVersion

    profile = factory.SubFactory(ProfileFactory)
    number = 1
    rules = factory.LazyFunction(lambda: stored_rules([sample_rule()]))
    notes = factory.LazyFunction(list)
    content_hash = factory.LazyAttribute(lambda o: content_hash(o.rules, o.notes))


class WaiverFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Waiver

    rule_id = TENANT_RULE_ID
    server = None
    customer = None
    justification = "The application vendor requires this right until its next release."
    proposed_by = factory.SubFactory(UserFactory)
    proposed_at = factory.LazyFunction(lambda: lockdown_clock.now())
    expires_at = factory.LazyFunction(lambda: lockdown_clock.now() + timedelta(days=30))


@dataclass
class TenantObjects:
    """One customer's objects, as the tenancy walker needs them."""

    customer: Customer
    credential: Credential
    server: Server
    tag: Tag
    profile: Profile
    waiver: Waiver


def build_tenant(label: str) -> TenantObjects:
    customer = CustomerFactory(name=f"Tenant {label} Ltd")
    credential = CredentialFactory(customer=customer, name=f"cred-{label.lower()}-secretname")
    server = ServerFactory(
        customer=customer, name=f"mx-{label.lower()}-01", address=f"mx.{label.lower()}.example", credential=credential
    )
    tag = TagFactory(name=f"tag-{label.lower()}")
    server.tags.add(tag)
    # A profile made for this customer (its name carries the customer's name, so a leak shows).
    version = ProfileVersionFactory(
        profile=ProfileFactory(slug=f"tenant-{label.lower()}-baseline", name=f"{customer.name} baseline")
    )
    customer.default_profile_version = version
    customer.save(update_fields=["default_profile_version"])
    waiver = WaiverFactory(
        server=server,
        rule_id=TENANT_RULE_ID,
        proposed_by=get_user_model().objects.get_or_create(username=f"proposer-{label.lower()}")[0],
    )
    return TenantObjects(
        customer=customer, credential=credential, server=server, tag=tag, profile=version.profile, waiver=waiver
    )


def tenant_exception(tenant: TenantObjects) -> Waiver:
    """An approved exception (the integrated-authentication rights) for the tenant's customer: the dashboard,
    the customer page and the lists show it (created on first use)."""
    label = tenant.customer.name.split()[1].lower()
    found = Waiver.objects.filter(kind="exception", customer=tenant.customer).first()
    if found is not None:
        return found
    exception = WaiverFactory.create(
        kind="exception",
        rule_id="exception.integrated_auth",
        customer=tenant.customer,
        conflicts=[
            {"framework": "cis", "id": "2.2.4", "title": "Act as part of the operating system",
             "benchmark": "CIS Microsoft Windows Server 2022 Benchmark", "version": "v4.0.0",
             "source": "https://github.com/ansible-lockdown/Windows-2022-CIS"},
        ],
        proposed_by=get_user_model().objects.get_or_create(username=f"proposer-{label}")[0],
        approved_by=get_user_model().objects.get_or_create(username=f"approver-{label}")[0],
        approved_at=lockdown_clock.now(),
    )  # fmt: skip
    return exception


def tenant_job(tenant: TenantObjects) -> int:
    """A verify job on the tenant's server (created on first use)."""
    from jobs.choices import JobKind
    from jobs.models import HostRun, Job

    run = HostRun.objects.filter(server=tenant.server).first()
    if run is None:
        job = Job.objects.create(kind=JobKind.VERIFY, description=f"Verify {tenant.server.name}")
        run = HostRun.objects.create(
            job=job,
            server=tenant.server,
            server_name=tenant.server.name,
            customer=tenant.customer,
            customer_name=tenant.customer.name,
        )
    return run.job_id


def tenant_report(tenant: TenantObjects) -> int:
    """A signed CSV report of the tenant's customer (created on first use)."""
    from reports.models import Report, ReportFormat
    from reports.services import report_create
    from servers.audit import Actor
    from servers.tenancy import Scope

    report = Report.objects.filter(customer=tenant.customer).first()
    if report is None:
        now = lockdown_clock.now()
        report = report_create(
            scope=Scope(user_id=None, msp_role=Role.ADMIN),
            actor=Actor.system("factory"),
            customer=tenant.customer,
            fmt=ReportFormat.CSV,
            period_start=now - timedelta(days=30),
            period_end=now,
        )
    return report.pk


def tenant_alert(tenant: TenantObjects) -> int:
    """An open drift alert on the tenant's server (created on first use)."""
    from jobs.choices import AlertKind
    from jobs.models import Alert

    alert = Alert.objects.filter(server=tenant.server).first()
    if alert is None:
        alert = Alert.objects.create(
            server=tenant.server,
            server_name=tenant.server.name,
            customer=tenant.customer,
            kind=AlertKind.DRIFT,
            message=f"{tenant.server.name}: 1 check(s) that were compliant are now in drift or error.",
            created_at=lockdown_clock.now(),
        )
    return alert.pk


def tenant_member(tenant: TenantObjects) -> Membership:
    """A customer viewer of the tenant's customer (created on first use), for the users pages."""
    user: Any = UserFactory(username=f"member-{tenant.customer.pk}")
    membership, _ = Membership.objects.get_or_create(
        user=user, customer=tenant.customer, defaults={"role": Role.VIEWER}
    )
    return membership


def tenant_import(tenant: TenantObjects) -> int:
    """A CSV import uploaded by a member of the tenant's customer (its page is the uploader's only)."""
    from lockdown import clock
    from servers.models import ServerImport

    record = ServerImport.objects.create(
        created_by=tenant_member(tenant).user, created_at=clock.now(), filename=f"{tenant.customer.name}.csv"
    )
    return record.pk


def tenant_token(tenant: TenantObjects) -> int:
    """An API token of a member of the tenant's customer (its revoke URL is its owner's only)."""
    from api.models import ApiToken

    member = tenant_member(tenant).user
    token, _ = ApiToken.objects.get_or_create(
        user=member, name="walker", defaults={"prefix": f"w{member.pk:07d}"[:8], "digest": "0" * 64}
    )
    return token.pk


def tenant_rule(tenant: TenantObjects) -> str:
    """A rule id only the tenant's server has a (drifted) result for: the fleet rule view's page."""
    from jobs.models import HostRun, RuleResult

    rule_id = f"user_right.tenant_{tenant.customer.pk}.service_logon"
    if not RuleResult.objects.filter(rule_id=rule_id).exists():
        tenant_job(tenant)
        RuleResult.objects.create(
            server=tenant.server,
            host_run=HostRun.objects.filter(server=tenant.server).order_by("pk")[0],
            rule_id=rule_id,
            target="IME_SYSTEM",
            section="User Rights",
            status="drift",
            expected_text="IME_SYSTEM holds SeServiceLogonRight.",
            observed_text="right not held",
            created_at=lockdown_clock.now(),
        )
    return rule_id


OUTCOME_STATUSES = ("compliant", "drift", "waived", "error")


def tenant_compliance(tenant: TenantObjects, rules: int = 4) -> Any:
    """The tenant's server verified: `rules` stored outcomes cycling through OUTCOME_STATUSES, whose
    observed text names the server (so a response that shows them to another customer shows the leak)."""
    from jobs.models import HostRun, ServerCompliance

    tenant_job(tenant)
    outcomes: list[dict[str, Any]] = [
        {
            "rule_id": f"file_acl.rule_{index:03d}",
            "target": f"C:\\Program Files (x86)\\Mail Enable\\Bin\\file{index}.exe",
            "section": f"Section {index % 3}",
            "status": OUTCOME_STATUSES[index % len(OUTCOME_STATUSES)],
            "underlying_status": "drift" if OUTCOME_STATUSES[index % len(OUTCOME_STATUSES)] == "waived" else None,
            "action": "none",
            "expected_text": "IME_SYSTEM may read and execute.",
            "expected": {},
            "observed_text": f"IME_SYSTEM has no access on {tenant.server.name}.",
            "observed": {},
            "reason": "",
            "risk": "low",
            "risk_note": None,
            "waiver_justification": None,
        }
        for index in range(rules)
    ]
    compliance, _ = ServerCompliance.objects.update_or_create(
        server=tenant.server,
        defaults={
            "host_run": HostRun.objects.filter(server=tenant.server).order_by("pk")[0],
            "verified_at": lockdown_clock.now(),
            "profile_label": "builtin v1",
            "outcomes": outcomes,
        },
    )
    return compliance


def tenant_tag_assignment(tenant: TenantObjects) -> int:
    """The tenant's tag, assigned the tenant's version for the tenant's servers only."""
    from lockdown.models import TagAssignment

    assignment, _ = TagAssignment.objects.get_or_create(
        tag=tenant.tag, customer=tenant.customer, defaults={"version": tenant.profile.versions.get()}
    )
    return assignment.pk


URL_PARAMETER_FACTORIES: dict[str, Callable[[TenantObjects], int | str]] = {
    "assignment_id": tenant_tag_assignment,
    "rule_id": tenant_rule,
    "token_id": tenant_token,
    "import_id": tenant_import,
    "user_id": lambda tenant: tenant_member(tenant).user_id,
    "membership_id": lambda tenant: tenant_member(tenant).pk,
    "job_id": tenant_job,
    "alert_id": tenant_alert,
    "server_id": lambda tenant: tenant.server.pk,
    "customer_id": lambda tenant: tenant.customer.pk,
    "credential_id": lambda tenant: tenant.credential.pk,
    "profile_id": lambda tenant: tenant.profile.pk,
    "version_number": lambda tenant: 1,
    "waiver_id": lambda tenant: tenant.waiver.pk,
    "report_id": tenant_report,
}


def import_csv(client: Any, content: str | bytes, name: str = "servers.csv") -> Any:
    """Upload a CSV as a user would and run its background import inline (as a worker would once the
    upload is committed); returns the page the user ends on: the upload page with the file's errors,
    or the import's own page (progress, row errors or the servers created)."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import TestCase
    from django.urls import reverse

    from servers import csv_import

    data = content.encode("utf-8") if isinstance(content, str) else content
    csv_import.set_enqueue(csv_import.server_import_run)
    try:
        with TestCase.captureOnCommitCallbacks(execute=True):
            response = client.post(reverse("server_import"), {"file": SimpleUploadedFile(name, data, "text/csv")})
    finally:
        csv_import.set_enqueue(None)
    return client.get(response["Location"]) if response.status_code == 302 else response
