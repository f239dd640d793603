"""The health semantics: a baseline before the first change, and checks for regressions only.

Baseline (read in the observe invocation): every MailEnable service's state and start mode,
which mail ports answer with MailEnable's banner, which login pages answer. After the changes
the program restarts only services that were Running, waits, and checks again with `expect`
on exactly what passed in the baseline: a check that failed before is reported, never a reason
to roll back. A Disabled or Stopped service is never started.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from lockdown.engine.program import Step, StepResult
from lockdown.rules.contract import HealthCheckResult, HealthStatus, HealthTargets

MAILENABLE_SERVICES: Final = ("MEMTAS", "MESMTPCS", "MEPOPS", "MEIMAPS", "MELCS", "MEPOCS", "MEPOPCS")
PROTOCOLS: Final = {
    # check: (service, default port, what to send, banner regex). Banners as MailEnable prints them.
    "smtp": ("MESMTPCS", 25, "EHLO fleet-lockdown", r"^220 .*Mail ?Enable"),
    "pop": ("MEPOPS", 110, "CAPA", r"^\+OK .*MailEnable"),
    "imap": ("MEIMAPS", 143, "a1 CAPABILITY", r"^\* OK .*MailEnable"),
}
PAGES: Final = (("webmail", "webmail_url"), ("webadmin", "admin_url"))
# A 200 page titled MailEnable, or a redirect to a login page, answers.
PAGE_OK_STATUS: Final = frozenset({200, 302})
SETTLE_SECONDS: Final = 15
PROBE_TIMEOUT_MS: Final = 10_000
SERVICE_TIMEOUT_MS: Final = 60_000
LOOPBACK: Final = "127.0.0.1"
# Where the host's own probes connect: IPv4 and IPv6 loopback (a listener bound to one family only
# answers on that one; the controller's network check covers the configured address). Step id suffix -> host.
ADDRESSES: Final = (("", LOOPBACK), (".v6", "::1"))


def base_check(check: str) -> str:
    """`smtp.v6` -> `smtp`."""
    return check.split(".", 1)[0]


def _port(targets: HealthTargets | None, check: str) -> int:
    value = getattr(targets, f"{check}_port", None) if targets is not None else None
    return int(value or PROTOCOLS[check][1])


def _url(targets: HealthTargets | None, key: str) -> str | None:
    return getattr(targets, key, None) if targets is not None else None


def probe_steps(prefix: str, targets: HealthTargets | None) -> list[Step]:
    """The probes of a health check (ids `<prefix>smtp`, …), without expectations. A self-signed
    certificate on the login pages is accepted only where the server's record says so."""
    allow_self_signed = bool(targets is not None and targets.allow_self_signed)
    steps = [
        Step(
            id=f"{prefix}{check}{suffix}",
            op="tcp_probe",
            args={"host": host, "port": _port(targets, check), "send": send, "timeout_ms": PROBE_TIMEOUT_MS},
        )
        for check, (_svc, _default, send, _regex) in PROTOCOLS.items()
        for suffix, host in ADDRESSES
    ]
    for check, key in PAGES:
        url = _url(targets, key)
        if url:
            args = {"url": url, "allow_self_signed": allow_self_signed, "timeout_ms": PROBE_TIMEOUT_MS}
            steps.append(Step(id=f"{prefix}{check}", op="http_probe", args=args))
    return steps


def services_step(step_id: str, names: Sequence[str] = MAILENABLE_SERVICES) -> Step:
    return Step(id=step_id, op="service_get", args={"names": list(names)})


@dataclass
class Baseline:
    """What answered before the first change."""

    services: dict[str, dict[str, Any]] = field(default_factory=dict)  # name (as read) -> service_get entry
    probes: dict[str, bool] = field(default_factory=dict)  # check -> answered
    details: dict[str, str] = field(default_factory=dict)

    def running(self) -> list[str]:
        """MailEnable's services that were Running (the ones a regression is judged on)."""
        names = {n.casefold() for n in MAILENABLE_SERVICES}
        return sorted(
            n
            for n, s in self.services.items()
            if n.casefold() in names and s.get("exists") and s.get("state") == "Running"
        )

    def state_of(self, name: str) -> dict[str, Any] | None:
        return next((s for n, s in self.services.items() if n.casefold() == name.casefold()), None)


def _tcp_ok(check: str, result: dict[str, Any] | None) -> tuple[bool, str]:
    import re

    if not result or not result.get("connected"):
        why = (result or {}).get("error") or "no connection"
        return False, str(why)[:500]
    banner = str(result.get("banner") or "")
    if re.search(PROTOCOLS[check][3], banner):
        return True, banner[:200]
    return False, f"unexpected banner {banner[:200]!r}"


def _page_ok(result: dict[str, Any] | None) -> tuple[bool, str]:
    if not result:
        return False, "no answer"
    status = result.get("status")
    if result.get("error"):
        prefix = f"HTTP {status}: " if status is not None else ""
        return False, (prefix + str(result["error"]))[:500]
    if status == 200 and "mailenable" in str(result.get("title") or "").casefold():
        return True, "200 MailEnable page"
    if status == 302 and "login.aspx" in str(result.get("location") or "").casefold():
        return True, "302 to the login page"
    return False, f"HTTP {status}"


def read_probe(check: str, step: StepResult | None) -> tuple[bool, str]:
    """Whether a probe answered as MailEnable does, and what it saw (an expect_failed step keeps its result)."""
    if step is not None and step.status == "error" and step.error is not None:
        return False, step.error.message[:500]
    result = step.result if step is not None else None
    return _tcp_ok(check, result) if check in PROTOCOLS else _page_ok(result)


def baseline_from(results: Mapping[str, StepResult], prefix: str, services_id: str) -> Baseline:
    base = Baseline()
    svc = results.get(services_id)
    if svc is not None and svc.status == "ok" and svc.result is not None:
        for entry in svc.result.get("services") or []:
            if isinstance(entry, dict) and entry.get("exists"):
                base.services[str(entry.get("name"))] = entry
    checks = [f"{c}{suffix}" for c in PROTOCOLS for suffix, _host in ADDRESSES] + [c for c, _ in PAGES]
    for check in checks:
        step = results.get(f"{prefix}{check}")
        if step is None:
            continue
        ok, detail = read_probe(base_check(check), step)
        base.probes[check], base.details[check] = ok, detail
    return base


def check_steps(prefix: str, baseline: Baseline, targets: HealthTargets | None) -> list[Step]:
    """Settle, then re-check exactly what answered in the baseline (critical: a miss aborts)."""
    steps = [Step(id=f"{prefix}settle", op="sleep", args={"seconds": SETTLE_SECONDS})]
    running = baseline.running()
    if running:
        expect = {f"services.{i}.state": "Running" for i in range(len(running))}
        steps.append(
            Step(id=f"{prefix}services", op="service_get", args={"names": running}, expect=expect, critical=True)
        )
    for probe in probe_steps(prefix, targets):
        check = probe.id[len(prefix) :]
        if not baseline.probes.get(check):
            continue  # failed before the change: reported, never a reason to roll back
        if base_check(check) in PROTOCOLS:
            update = {"expect": {"connected": True}, "expect_match": {"banner": PROTOCOLS[base_check(check)][3]}}
        else:
            update = {"expect": {"error": None}, "expect_match": {"status": r"^(200|302)$"}}
        steps.append(probe.model_copy(update={**update, "critical": True}))
    return steps


def report(
    prefix: str, baseline: Baseline, targets: HealthTargets | None, results: Mapping[str, StepResult]
) -> list[HealthCheckResult]:
    """The health list of the result: what the checks saw, ok / failed / not_checked."""

    def entry(check: str, ok: bool, detail: str) -> HealthCheckResult:
        return HealthCheckResult(
            check=check, status=HealthStatus.OK if ok else HealthStatus.FAILED, detail=detail[:1000]
        )

    out = []
    svc = results.get(f"{prefix}services")
    running = baseline.running()
    if svc is not None and svc.result is not None:
        now = {str(s.get("name")).casefold(): s.get("state") for s in svc.result.get("services") or []}
        down = [f"{n} is {now.get(n.casefold()) or 'missing'}" for n in running if now.get(n.casefold()) != "Running"]
        out.append(entry("services", not down, "; ".join(down) if down else "running: " + ", ".join(running)))
    elif running:
        out.append(HealthCheckResult(check="services", status=HealthStatus.NOT_CHECKED, detail="not reached"))
    for check, (service, _port_default, _send, _regex) in PROTOCOLS.items():
        step = results.get(f"{prefix}{check}")
        if step is None:
            before = baseline.details.get(check, "")
            status = HealthStatus.NOT_CHECKED
            why = f"did not answer before the change ({before})" if check in baseline.probes else "not reached"
            if baseline.state_of(service) is None:
                why = "not installed"
            out.append(HealthCheckResult(check=check, status=status, detail=why[:1000]))
            continue
        ok, detail = read_probe(check, step)
        port = _port(targets, check)
        text = f"port {port}" if ok else f"{check.upper()} on port {port}: {detail}"
        v6 = results.get(f"{prefix}{check}.v6")
        if v6 is not None:
            ok6, detail6 = read_probe(check, v6)
            if not ok6:
                text += f"; on ::1: {detail6}"
            else:  # "127.0.0.1 and ::1" only when both answered
                text += " (127.0.0.1 and ::1)" if ok else " (::1 answers)"
            ok = ok and ok6
        out.append(entry(check, ok, text))
    mta = baseline.state_of("MEMTAS")
    if mta is not None and svc is not None and svc.result is not None:
        state = next(
            (s.get("state") for s in svc.result.get("services") or [] if s.get("name") == mta.get("name")), None
        )
        out.append(entry("mta", state == "Running", f"MEMTAS is {state or 'not checked'}"))
    for check, key in PAGES:
        url = _url(targets, key)
        step = results.get(f"{prefix}{check}")
        if not url:
            out.append(
                HealthCheckResult(check=check, status=HealthStatus.NOT_CHECKED, detail="not checked: no URL configured")
            )
        elif step is None:
            out.append(
                HealthCheckResult(
                    check=check, status=HealthStatus.NOT_CHECKED, detail=f"{url}: did not answer before the change"
                )
            )
        else:
            ok, detail = read_probe(check, step)
            out.append(entry(check, ok, url if ok else f"{url}: {detail}"))
    return out


# Win32 messages of the service start failures an operator meets (MS Learn, System Error Codes).
SERVICE_ERRORS: Final = {
    5: "Access is denied.",
    1053: "The service did not respond to the start or control request in a timely fashion.",
    1058: "The service cannot be started, either because it is disabled or because it has no enabled devices "
    "associated with it.",
    1067: "The process terminated unexpectedly.",
    1068: "The dependency service or group failed to start.",
    1069: "The service did not start due to a logon failure.",
}


def start_failures(steps: Sequence[Step], results: Mapping[str, StepResult]) -> list[str]:
    """'<service> did not start: <message> [Win32 error N]' for each failed start among `steps`."""
    out = []
    for step in steps:
        result = results.get(step.id)
        if step.op != "service_control" or step.args.get("action") != "start" or result is None:
            continue
        code = (result.result or {}).get("code")
        if isinstance(code, int) and code != 0:
            out.append(f"{step.args['name']} did not start: {SERVICE_ERRORS.get(code, 'error')} [Win32 error {code}]")
    return out


def regressions(prefix: str, results: Mapping[str, StepResult]) -> list[str]:
    """The checks of the program that failed (those are, by construction, regressions)."""
    out = []
    for step_id, step in results.items():
        if step_id.startswith(prefix) and step.status in ("error", "expect_failed") and not step_id.endswith("settle"):
            check = step_id[len(prefix) :]
            if check == "services" and step.result is not None:
                down = [
                    f"{s.get('name')} is {s.get('state')}"
                    for s in step.result.get("services") or []
                    if s.get("state") != "Running"
                ]
                out.append("; ".join(down) or "services not running")
            else:
                where = " on ::1" if check.endswith(".v6") else ""
                out.append(f"{base_check(check)}{where}: {read_probe(base_check(check), step)[1]}")
    return out
