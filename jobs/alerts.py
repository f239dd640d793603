"""Alerts: raised when a server's compliance drops, sent by email and webhook, acknowledged by people.

A drop is a *transition* seen by one verify: a rule that was compliant is now drift or error, or
the server's status got worse (compliant → drifted → failing → not assessed / unreachable). A
drift that persists raises nothing more, so there is one alert per drop, not one per verify; the
first verify that shows the drop undone resolves the alert by itself. When the
customer turned auto-remediation on (off by default), a drop found by a verify starts a harden
job as the system; the audit log records it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

from jobs.choices import AlertKind, DeliveryChannel, DeliveryState, JobKind
from jobs.models import Alert, AlertDelivery, AlertSettings, HostRun
from lockdown import clock
from servers.audit import Actor, audit_record
from servers.choices import ServerStatus
from servers.crypto import encrypt_secret, redact
from servers.models import Customer, Server
from servers.tenancy import Action, Scope, require

log = logging.getLogger(__name__)

# Worse is higher; never_verified is not ranked (a first verify is not a drop).
STATUS_RANK = {
    ServerStatus.COMPLIANT: 0,
    ServerStatus.DRIFTED: 1,
    ServerStatus.FAILING: 2,
    ServerStatus.NOT_ASSESSED: 3,
    ServerStatus.UNREACHABLE: 3,
}
DROPPED_TO = frozenset({"drift", "error"})
MAX_RULES_IN_ALERT = 50
SYSTEM_SCOPE = Scope(user_id=None, msp_role="admin")

WebhookEnqueue = Callable[[int], None]


def _default_webhook_enqueue(delivery_id: int) -> None:
    from jobs.tasks import deliver_webhook

    deliver_webhook.delay(delivery_id)


_webhook_enqueue: WebhookEnqueue = _default_webhook_enqueue


def set_webhook_enqueue(function: WebhookEnqueue | None) -> None:
    """Tests replace how webhook deliveries reach the broker; None restores Celery."""
    global _webhook_enqueue
    _webhook_enqueue = function or _default_webhook_enqueue


def _worse(before: str, after: str) -> bool:
    return before in STATUS_RANK and after in STATUS_RANK and STATUS_RANK[after] > STATUS_RANK[before]  # type: ignore[index]


def compliance_checked(
    *,
    server: Server,
    host_run: HostRun,
    previous: Sequence[dict[str, Any]],
    current: Sequence[dict[str, Any]],
    status_before: str,
    status_after: str,
) -> Alert | None:
    """Called by the runner after a verify stored its outcomes: resolve the alerts it shows recovered,
    then raise an alert on a drop."""
    alerts_resolve_recovered(server=server, host_run=host_run, current=current, status_after=status_after)
    before = {(o["rule_id"], o["target"]): o.get("status") for o in previous}
    dropped = [
        o for o in current if o.get("status") in DROPPED_TO and before.get((o["rule_id"], o["target"])) == "compliant"
    ]
    worse = _worse(status_before, status_after)
    if not dropped and not worse:
        return None
    if dropped:
        kind = AlertKind.DRIFT
        message = f"{server.name}: {len(dropped)} check(s) that were compliant are now in drift or error" + (
            f"; status {status_before} → {status_after}." if worse else "."
        )
    else:
        kind = AlertKind.STATUS
        message = f"{server.name}: status {status_before} → {status_after}."
    details = {
        "status_before": status_before,
        "status_after": status_after,
        "rules": [
            {"rule_id": o["rule_id"], "target": o["target"], "status": o["status"]}
            for o in dropped[:MAX_RULES_IN_ALERT]
        ],
        "rules_total": len(dropped),
    }
    return alert_raise(server=server, host_run=host_run, kind=kind, message=message, details=details)


def _recovered(alert: Alert, statuses: dict[tuple[str, str], Any], status_after: str) -> bool:
    """Whether the outcomes just stored show the drop this alert reported undone.

    Its status must be back to (or better than) the one before the drop; a drift alert also needs
    every rule it named out of drift and error (and, when it named only the first
    MAX_RULES_IN_ALERT, no rule in drift or error at all).
    """
    before = alert.details.get("status_before", "")
    if STATUS_RANK.get(status_after, 99) > STATUS_RANK.get(before, 0):  # type: ignore[call-overload]
        return False
    if alert.kind != AlertKind.DRIFT:
        return True
    rules = alert.details.get("rules", [])
    if any(statuses.get((rule["rule_id"], rule["target"])) in DROPPED_TO for rule in rules):
        return False
    return alert.details.get("rules_total", 0) <= len(rules) or not any(s in DROPPED_TO for s in statuses.values())


def alerts_resolve_recovered(
    *, server: Server, host_run: HostRun, current: Sequence[dict[str, Any]], status_after: str
) -> int:
    """Resolve this server's unresolved alerts that the verify `host_run` shows recovered; returns how many."""
    statuses = {(o["rule_id"], o["target"]): o.get("status") for o in current}
    pending = list(
        Alert.objects.select_related("customer").filter(server=server, resolved_at__isnull=True).order_by("pk")
    )
    recovered = [alert for alert in pending if _recovered(alert, statuses, status_after)]
    if not recovered:
        return 0
    with transaction.atomic():
        Alert.objects.filter(pk__in=[a.pk for a in recovered], resolved_at__isnull=True).update(
            resolved_at=clock.now(), resolved_by_run=host_run
        )
        for alert in recovered:
            audit_record(
                actor=Actor.system("alerts"),
                action="alert.resolve",
                obj=alert,
                customer=alert.customer,
                changes={"server": server.name, "status": status_after, "job": host_run.job_id},
            )
    return len(recovered)


def server_status_changed(*, server_id: int, host_run: HostRun, status_before: str, status_after: str) -> Alert | None:
    """Called when a run could not reach or read a server: an alert if its status got worse."""
    if not _worse(status_before, status_after):
        return None
    server = Server.objects.select_related("customer").filter(pk=server_id).first()
    if server is None:
        return None
    message = f"{server.name}: status {status_before} → {status_after} ({host_run.error_kind or 'run failed'})."
    details = {"status_before": status_before, "status_after": status_after, "rules": [], "rules_total": 0}
    return alert_raise(server=server, host_run=host_run, kind=AlertKind.STATUS, message=message, details=details)


def alert_raise(
    *, server: Server, host_run: HostRun | None, kind: AlertKind, message: str, details: dict[str, Any]
) -> Alert:
    """Store the alert, plan its deliveries and (after commit) send them; maybe start a remediation."""
    customer = server.customer
    config = AlertSettings.objects.filter(customer=customer).first()
    with transaction.atomic():
        alert = Alert.objects.create(
            server=server,
            server_name=server.name,
            customer=customer,
            host_run=host_run,
            kind=kind,
            message=redact(message)[:2000],
            details=details,
            created_at=clock.now(),
        )
        deliveries = []
        if config is not None and config.recipients:
            deliveries.append(
                AlertDelivery.objects.create(
                    alert=alert, channel=DeliveryChannel.EMAIL, target=", ".join(config.recipients)[:500]
                )
            )
        if config is not None and config.webhook_url and config.webhook_secret_encrypted:
            deliveries.append(
                AlertDelivery.objects.create(alert=alert, channel=DeliveryChannel.WEBHOOK, target=config.webhook_url)
            )
        audit_record(
            actor=Actor.system("alerts"),
            action="alert.raise",
            obj=alert,
            customer=customer,
            changes={"kind": str(kind), "server": server.name, "rules_total": details.get("rules_total", 0)},
        )
        ids = [(d.pk, d.channel) for d in deliveries]
        transaction.on_commit(lambda: _send(ids))
    from_verify = host_run is not None and host_run.job.kind == JobKind.VERIFY
    if config is not None and config.auto_remediate and from_verify and kind == AlertKind.DRIFT:
        _auto_remediate(alert, server)
    return alert


def _send(deliveries: list[tuple[int, str]]) -> None:
    for delivery_id, channel in deliveries:
        if channel == DeliveryChannel.EMAIL:
            alert_email_send(delivery_id)
        else:
            _webhook_enqueue(delivery_id)


def alert_email_send(delivery_id: int) -> None:
    """Send one alert email through Django's mail backend (failures are recorded, not raised)."""
    delivery = AlertDelivery.objects.select_related("alert").filter(pk=delivery_id).first()
    if delivery is None or delivery.state != DeliveryState.PENDING:
        return
    alert = delivery.alert
    config = AlertSettings.objects.filter(customer_id=alert.customer_id).first()
    recipients = config.recipients if config is not None else []
    if not recipients:
        AlertDelivery.objects.filter(pk=delivery_id).update(state=DeliveryState.FAILED, last_error="no recipients")
        return
    subject = f"[Fleet Lockdown] {alert.get_kind_display()}: {alert.server_name}"
    body = f"{alert.message}\n\n" + "\n".join(
        f"- {rule['rule_id']} {rule['target']}: {rule['status']}" for rule in alert.details.get("rules", [])
    )
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception as exc:  # the mail backend's errors vary (SMTP, socket, ...)
        AlertDelivery.objects.filter(pk=delivery_id).update(
            attempts=delivery.attempts + 1, state=DeliveryState.FAILED, last_error=redact(str(exc))[:500]
        )
        log.warning("alert %s: email not sent (%s)", alert.pk, exc.__class__.__name__)
        return
    AlertDelivery.objects.filter(pk=delivery_id).update(
        attempts=delivery.attempts + 1, state=DeliveryState.SENT, delivered_at=clock.now()
    )


def _auto_remediate(alert: Alert, server: Server) -> None:
    """Start a harden job as the system, recorded in the audit log (and on the alert)."""
    from jobs.services import JobRefused, job_create

    actor = Actor.system("auto-remediation")
    try:
        job = job_create(
            scope=SYSTEM_SCOPE,
            actor=actor,
            kind=JobKind.HARDEN,
            servers=[server],
            description=f"Auto-remediation of alert #{alert.pk} on {server.name}",
        )
    except JobRefused as refused:
        audit_record(
            actor=actor,
            action="alert.auto_remediation_refused",
            obj=alert,
            customer=server.customer,
            changes={"reason": str(refused)},
        )
        return
    Alert.objects.filter(pk=alert.pk).update(remediation_job=job)
    audit_record(
        actor=actor,
        action="alert.auto_remediation",
        obj=alert,
        customer=server.customer,
        changes={"job": job.pk, "server": server.name},
    )


def alert_acknowledge(*, scope: Scope, actor: Actor, alert: Alert) -> bool:
    """Mark acknowledged (once); returns False when someone already did."""
    require(scope, Action.EDIT_SERVERS, alert.customer_id)
    with transaction.atomic():
        changed = Alert.objects.filter(pk=alert.pk, acknowledged_at__isnull=True).update(
            acknowledged_at=clock.now(), acknowledged_by=actor.user
        )
        if changed:
            audit_record(actor=actor, action="alert.acknowledge", obj=alert, customer=alert.customer)
    return bool(changed)


def alert_settings_save(
    *,
    scope: Scope,
    actor: Actor,
    customer: Customer,
    email_recipients: Sequence[str],
    webhook_url: str,
    webhook_secret: str | None,
    auto_remediate: bool,
    webhook_allow_http: bool | None = None,
) -> AlertSettings:
    """Save a customer's alert settings. `webhook_secret` None keeps the stored one (write-only field);
    `webhook_allow_http` None keeps the stored choice, and only an MSP admin may change it.

    The URL is checked against the allow-list here and again before each delivery.
    DANGER: `webhook_secret` is plaintext; it is encrypted and never audited.
    """
    from jobs.webhooks import check_webhook_target

    require(scope, Action.HARDEN, customer.pk)
    stored = AlertSettings.objects.filter(customer=customer).first()
    stored_http = bool(stored and stored.webhook_allow_http)
    if webhook_allow_http is not None and webhook_allow_http != stored_http:
        require(scope, Action.MANAGE_CUSTOMERS)  # MSP admins only
    allow_http = stored_http if webhook_allow_http is None else webhook_allow_http
    if webhook_url:
        check_webhook_target(webhook_url, allow_http=allow_http)
    with transaction.atomic():
        config, _ = AlertSettings.objects.select_for_update().get_or_create(customer=customer)
        before = {
            "email_recipients": config.recipients,
            "webhook_url": config.webhook_url,
            "webhook_allow_http": config.webhook_allow_http,
            "auto_remediate": config.auto_remediate,
        }
        config.webhook_allow_http = allow_http
        config.email_recipients = "\n".join(r.strip() for r in email_recipients if r.strip())
        config.webhook_url = webhook_url
        secret_changed = False
        if webhook_secret:
            config.webhook_secret_encrypted = encrypt_secret(webhook_secret)
            secret_changed = True
        if not webhook_url:
            secret_changed = secret_changed or bool(config.webhook_secret_encrypted)
            config.webhook_secret_encrypted = ""
        config.auto_remediate = auto_remediate
        config.save()
        after = {
            "email_recipients": config.recipients,
            "webhook_url": config.webhook_url,
            "webhook_allow_http": config.webhook_allow_http,
            "auto_remediate": config.auto_remediate,
        }
        changes: dict[str, Any] = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
        if secret_changed:
            changes["secret"] = "changed"  # noqa: S105 - audit_record replaces it with "[secret changed]"
        if changes:
            audit_record(actor=actor, action="customer.alert_settings", obj=customer, changes=changes)
    return config
