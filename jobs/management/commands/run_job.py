"""`manage.py run_job KIND (--server NAME | --customer NAME | --all) [--wait] [--dry-run]`.

Goes through Celery exactly like the UI (job_create → dispatch → worker), prints per-host
outcomes, and exits non-zero if any host failed.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.choices import HostRunState, JobKind
from jobs.models import Job
from jobs.services import JobOptions, JobRefused, job_create, maintenance_window_for
from lockdown import clock
from servers.audit import Actor
from servers.models import Server
from servers.tenancy import Scope


class Command(BaseCommand):
    help = "Start a job through Celery like the UI does; with --wait, print per-host outcomes."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("kind", choices=JobKind.values)
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--server", help="server name (unique across customers, or use --customer too)")
        target.add_argument("--customer", help="every server of this customer")
        target.add_argument("--all", action="store_true", help="every server")
        parser.add_argument("--in-customer", help="with --server: the server's customer")
        parser.add_argument("--wait", action="store_true", help="wait for the job and print per-host outcomes")
        parser.add_argument("--dry-run", action="store_true", help="harden: report what would change, change nothing")
        parser.add_argument("--canary", type=int, default=0, help="hosts in the first wave")
        parser.add_argument("--threshold", type=int, default=20, help="stop when more than this %% of a wave fails")
        parser.add_argument("--max-in-flight", type=int, default=20)
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait with --wait")
        parser.add_argument(
            "--in-window", action="store_true", help="start in the customer's next maintenance window (one customer)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        servers = Server.objects.select_related("customer")
        if options["server"]:
            servers = servers.filter(name=options["server"])
            if options["in_customer"]:
                servers = servers.filter(customer__name=options["in_customer"])
        elif options["customer"]:
            servers = servers.filter(customer__name=options["customer"])
        chosen = list(servers)
        if not chosen:
            raise CommandError("no server matches")
        if options["server"] and len(chosen) > 1:
            raise CommandError("several customers have a server of that name; add --in-customer")
        # The command line is an MSP administrator's tool: MSP-wide admin scope, audited as such.
        scope = Scope(user_id=None, msp_role="admin")
        window: dict[str, Any] = {}
        if options["in_window"]:
            try:
                not_before, not_after = maintenance_window_for(chosen, clock.now())
            except JobRefused as refused:
                raise CommandError(str(refused)) from None
            window = {"not_before": not_before, "not_after": not_after}
            self.stdout.write(
                f"waiting for the maintenance window {not_before:%Y-%m-%d %H:%M} to {not_after:%H:%M} UTC"
            )
        try:
            job = job_create(
                scope=scope,
                actor=Actor.system("run_job"),
                kind=JobKind(options["kind"]),
                servers=chosen,
                options=JobOptions(
                    dry_run=options["dry_run"],
                    canary_size=options["canary"],
                    failure_threshold_pct=options["threshold"],
                    max_in_flight=options["max_in_flight"],
                    **window,
                ),
                description=f"run_job {options['kind']}: {len(chosen)} servers",
            )
        except JobRefused as refused:
            raise CommandError(str(refused)) from None
        self.stdout.write(f"job #{job.pk}: {job.get_kind_display()} of {len(chosen)} servers")
        if not options["wait"]:
            return
        deadline = time.monotonic() + options["timeout"]
        while time.monotonic() < deadline:
            job = Job.objects.get(pk=job.pk)
            if not job.is_active:
                break
            time.sleep(0.5)
        else:
            raise CommandError(f"job #{job.pk} still running after {options['timeout']} s")
        failed = 0
        for run in job.host_runs.order_by("customer_name", "server_name"):
            pct = "" if run.compliance_pct is None else f" {run.compliance_pct:.1f}%"
            error = f" {run.error_kind}: {run.error_message}" if run.error_kind else ""
            self.stdout.write(f"{run.customer_name}/{run.server_name}: {run.state}{pct}{error}")
            failed += run.state in (HostRunState.FAILED, HostRunState.ROLLED_BACK)
        self.stdout.write(f"job #{job.pk}: {job.get_state_display()}")
        if failed or job.state != "succeeded":
            raise CommandError(f"{failed} host(s) failed")
