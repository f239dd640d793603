"""Port scanner (security-audit-2026-12, medium): "Test connection" and the mail-port check answered
differently for closed and open ports on any address a customer's operator typed.

With the customer's management networks set, the transport opens nothing outside them; a customer's
users read one sentence for every failed connection (the MSP keeps the detail); test connection is
rate-limited per user.
"""

from __future__ import annotations

import socket

import pytest
from django.urls import reverse

from jobs import runner
from jobs.choices import CONNECT_FAILED, HostRunState, JobKind
from jobs.models import HostRun, HostRunEvent, Job
from jobs.services import JobRefused, job_create
from remote.errors import OutsideManagementNetworks
from remote.networks import require_inside
from servers.audit import Actor
from servers.binding import bind
from servers.models import Customer, Server
from servers.tenancy import Scope

pytestmark = pytest.mark.django_db
MSP = Scope(user_id=None, msp_role="admin")


def _aim(server: Server, port: int) -> Server:
    """The server pointed at 127.0.0.1:port (bound, as if an MSP admin did it: the network rule is separate)."""
    server.address, server.winrm_scheme, server.winrm_port, server.tls_verify = "127.0.0.1", "http", port, "off"
    server.smtp_port = server.pop_port = server.imap_port = port
    bind(server)
    server.save()
    return server


def _discover(server: Server, scope: Scope = MSP) -> HostRun:
    job = job_create(scope=scope, actor=Actor.system("t"), kind=JobKind.DISCOVER, servers=[server])
    run = HostRun.objects.get(job=job)
    runner.run_host(run.pk)
    run.refresh_from_db()
    return run


def test_networks_are_checked_on_every_resolved_address():
    require_inside("10.20.1.5", 5985, ("10.20.0.0/16",))
    require_inside("anything.example", 5985, ())  # no networks: no restriction
    with pytest.raises(OutsideManagementNetworks):
        require_inside("127.0.0.1", 5985, ("10.20.0.0/16",))
    with pytest.raises(OutsideManagementNetworks):
        require_inside("::ffff:169.254.169.254", 5985, ("10.20.0.0/16",))
    require_inside("::ffff:10.20.9.9", 5985, ("10.20.0.0/16",))


def test_a_server_outside_the_customers_networks_is_never_connected_to(tenant_a, listener):
    Customer.objects.filter(pk=tenant_a.customer.pk).update(management_networks="10.20.0.0/16\n192.0.2.0/24")
    server = _aim(Server.objects.get(pk=tenant_a.server.pk), listener.port)
    run = _discover(server)
    assert run.state == HostRunState.FAILED
    assert run.error_kind == "outside_management_networks"
    assert listener.connections == 0
    # the mail-port check touches none of its ports either
    assert runner.check_mail_banners(server, timeout=1) == [
        "the host's address is outside the customer's management networks"
    ]
    assert listener.connections == 0


def test_the_installation_networks_apply_where_a_customer_sets_none(tenant_a, listener, settings):
    settings.FLEET_MANAGEMENT_NETWORKS = ["10.0.0.0/8"]
    server = _aim(Server.objects.get(pk=tenant_a.server.pk), listener.port)
    assert _discover(server).error_kind == "outside_management_networks"
    assert listener.connections == 0
    Customer.objects.filter(pk=tenant_a.customer.pk).update(management_networks="127.0.0.0/8")
    server = Server.objects.select_related("customer").get(pk=server.pk)
    assert runner.check_mail_banners(server, timeout=1) != [
        "the host's address is outside the customer's management networks"
    ]
    assert listener.connections > 0  # inside its own networks it is reached


def test_a_customers_user_reads_one_sentence_for_any_failed_connection(tenant_a, listener, client, cora, alice):
    # an open port that does not speak WinRM, and a closed one: the MSP sees how each failed ...
    open_port = _discover(_aim(Server.objects.get(pk=tenant_a.server.pk), listener.port))
    probe = socket.create_server(("127.0.0.1", 0))
    closed = probe.getsockname()[1]
    probe.close()
    closed_port = _discover(_aim(Server.objects.get(pk=tenant_a.server.pk), closed))
    assert open_port.state == closed_port.state == HostRunState.FAILED
    details = {open_port.error_message, closed_port.error_message}
    client.force_login(alice)
    msp_pages = [client.get(reverse("job_detail", args=[r.job_id])).content.decode() for r in (open_port, closed_port)]
    assert all(any(d[:40] in page for d in details) for page in msp_pages)
    # ... the customer's viewer reads the same sentence for both, and no detail in the log
    client.force_login(cora)
    for run in (open_port, closed_port):
        page = client.get(reverse("job_detail", args=[run.job_id])).content.decode()
        assert CONNECT_FAILED in page
        assert run.error_message[:40] not in page
        assert run.error_kind not in page
    assert HostRunEvent.objects.filter(host_run=open_port, msp_only=True).exists()


def test_test_connection_is_rate_limited_per_user(tenant_a, carol, settings):
    settings.FLEET_TEST_CONNECTION_PER_MINUTE = 3
    scope = Scope(user_id=carol.pk, customer_roles={tenant_a.customer.pk: "operator"})
    actor = Actor(user=carol, name="carol")
    for _ in range(3):
        job_create(scope=scope, actor=actor, kind=JobKind.DISCOVER, servers=[tenant_a.server])
    with pytest.raises(JobRefused, match="At most 3 connection tests a minute"):
        job_create(scope=scope, actor=actor, kind=JobKind.DISCOVER, servers=[tenant_a.server])
    assert Job.objects.filter(kind=JobKind.DISCOVER).count() == 3
    # verifies are not limited by it
    job_create(scope=scope, actor=actor, kind=JobKind.VERIFY, servers=[tenant_a.server])


def test_the_mail_port_check_connects_to_the_address_it_vetted(tenant_a, listener, monkeypatch):
    # A rebinding name: inside the networks for the check, then resolving nowhere (or elsewhere).
    real, lookups = socket.getaddrinfo, []

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "mail.rebind.test":
            lookups.append(host)
            if len(lookups) > 1:
                raise socket.gaierror(socket.EAI_NONAME, "rebound")
            return real("127.0.0.1", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    Customer.objects.filter(pk=tenant_a.customer.pk).update(management_networks="127.0.0.0/8")
    server = _aim(Server.objects.get(pk=tenant_a.server.pk), listener.port)
    Server.objects.filter(pk=server.pk).update(address="mail.rebind.test")
    server = Server.objects.select_related("customer").get(pk=server.pk)
    runner.check_mail_banners(server, timeout=1, protocols={"SMTP"})
    assert listener.connections == 1  # the vetted 127.0.0.1, with no second lookup of the name
    assert lookups == ["mail.rebind.test"]
