"""The health semantics in isolation: which probes a baseline takes, how a probe's answer is read,
what is re-checked after a change, and what the operator reads in the health list and the
regressions. Inputs are plain step results, as the host returns them."""

from __future__ import annotations

from typing import Any

from lockdown.engine import health
from lockdown.engine.program import Step, StepError, StepResult
from lockdown.rules.contract import HealthCheckResult, HealthStatus, HealthTargets

WEBMAIL = "https://mail.example.com/mewebmail/Mondo/lang/sys/login.aspx"
ADMIN = "https://mail.example.com/meadmin/"
SMTP_BANNER = "220 mail.example.com ESMTP MailEnable Service, Version: 10.44 ready"
POP_BANNER = "+OK Welcome to MailEnable POP3 Server"
IMAP_BANNER = "* OK IMAP4rev1 server ready at 12/02/26 (MailEnable)"
TARGETS = HealthTargets(
    smtp_port=2525, pop_port=1110, imap_port=1143, webmail_url=WEBMAIL, admin_url=ADMIN, allow_self_signed=True
)


def ok(step_id: str, op: str, result: dict[str, Any]) -> StepResult:
    return StepResult(id=step_id, op=op, status="ok", result=result)


def failed(step_id: str, op: str, result: dict[str, Any] | None) -> StepResult:
    return StepResult(id=step_id, op=op, status="expect_failed", result=result)


def error(step_id: str, op: str, message: str, code: str = "exception") -> StepResult:
    return StepResult(id=step_id, op=op, status="error", error=StepError(code=code, message=message))


def service(name: str, state: str = "Running", exists: bool = True) -> dict[str, Any]:
    return {"name": name, "exists": exists, "state": state, "start_mode": "Auto"}


def tcp(banner: str) -> dict[str, Any]:
    return {"connected": True, "banner": banner, "reply": "", "error": None}


def page(status: int | None, title: str = "", location: str = "", err: str | None = None) -> dict[str, Any]:
    return {"status": status, "title": title, "location": location, "error": err}


# --- the probes -------------------------------------------------------------------------------


def test_base_check_drops_the_address_suffix() -> None:
    assert health.base_check("smtp.v6") == "smtp"
    assert health.base_check("webmail") == "webmail"
    assert health.base_check("imap.v6.x") == "imap"


def test_probes_without_targets_are_the_default_ports_on_both_loopbacks_and_no_login_page() -> None:
    steps = health.probe_steps("b.", None)
    timeout = health.PROBE_TIMEOUT_MS
    assert steps == [
        Step(
            id=f"b.{check}{suffix}",
            op="tcp_probe",
            args={"host": host, "port": port, "send": send, "timeout_ms": timeout},
        )
        for check, port, send in (
            ("smtp", 25, "EHLO fleet-lockdown"),
            ("pop", 110, "CAPA"),
            ("imap", 143, "a1 CAPABILITY"),
        )
        for suffix, host in (("", "127.0.0.1"), (".v6", "::1"))
    ]


def test_probes_use_the_configured_ports_and_check_the_login_pages_named() -> None:
    steps = {s.id: s for s in health.probe_steps("b.", TARGETS)}
    assert [steps[f"b.{c}"].args["port"] for c in ("smtp", "pop", "imap")] == [2525, 1110, 1143]
    assert [steps[f"b.{c}.v6"].args["port"] for c in ("smtp", "pop", "imap")] == [2525, 1110, 1143]
    assert steps["b.webmail"] == Step(
        id="b.webmail", op="http_probe", args={"url": WEBMAIL, "allow_self_signed": True, "timeout_ms": 10_000}
    )
    assert steps["b.webadmin"].args == {"url": ADMIN, "allow_self_signed": True, "timeout_ms": 10_000}
    assert len(steps) == 8


def test_a_missing_port_falls_back_to_the_default_and_a_missing_url_is_not_probed() -> None:
    targets = HealthTargets(pop_port=1110, admin_url=ADMIN)
    steps = {s.id: s for s in health.probe_steps("b.", targets)}
    assert steps["b.smtp"].args["port"] == 25
    assert steps["b.pop"].args["port"] == 1110
    assert "b.webmail" not in steps
    assert steps["b.webadmin"].args["allow_self_signed"] is False  # only where the record says so


def test_services_step_reads_every_mailenable_service_by_default() -> None:
    assert health.services_step("b.services") == Step(
        id="b.services",
        op="service_get",
        args={"names": ["MEMTAS", "MESMTPCS", "MEPOPS", "MEIMAPS", "MELCS", "MEPOCS", "MEPOPCS"]},
    )
    assert health.services_step("x", ("MEPOPS",)).args == {"names": ["MEPOPS"]}


# --- reading a probe's answer -----------------------------------------------------------------


def test_a_mail_port_answers_only_with_mailenables_banner() -> None:
    assert health.read_probe("smtp", ok("p", "tcp_probe", tcp(SMTP_BANNER))) == (True, SMTP_BANNER)
    assert health.read_probe("smtp", ok("p", "tcp_probe", tcp("220 host Mail Enable ready"))) == (
        True,
        "220 host Mail Enable ready",
    )
    assert health.read_probe("pop", ok("p", "tcp_probe", tcp(POP_BANNER))) == (True, POP_BANNER)
    assert health.read_probe("imap", ok("p", "tcp_probe", tcp(IMAP_BANNER))) == (True, IMAP_BANNER)
    assert health.read_probe("smtp", ok("p", "tcp_probe", tcp("220 mx.example.com ESMTP Postfix"))) == (
        False,
        "unexpected banner '220 mx.example.com ESMTP Postfix'",
    )
    assert health.read_probe("pop", ok("p", "tcp_probe", tcp(SMTP_BANNER))) == (
        False,
        f"unexpected banner {SMTP_BANNER!r}",
    )
    no_banner = {"connected": True, "banner": None, "reply": None, "error": None}
    assert health.read_probe("imap", ok("p", "tcp_probe", no_banner)) == (False, "unexpected banner ''")


def test_a_banner_is_cut_to_200_characters() -> None:
    long_ok = SMTP_BANNER + "x" * 300
    assert health.read_probe("smtp", ok("p", "tcp_probe", tcp(long_ok))) == (True, long_ok[:200])
    long_bad = "220 " + "y" * 300
    assert health.read_probe("smtp", ok("p", "tcp_probe", tcp(long_bad))) == (
        False,
        f"unexpected banner {long_bad[:200]!r}",
    )


def test_a_closed_port_reports_the_hosts_error_or_no_connection() -> None:
    refused = {"connected": False, "banner": None, "reply": None, "error": "No connection could be made"}
    assert health.read_probe("smtp", ok("p", "tcp_probe", refused)) == (False, "No connection could be made")
    silent = {"connected": False, "banner": None, "reply": None, "error": None}
    assert health.read_probe("smtp", ok("p", "tcp_probe", silent)) == (False, "no connection")
    assert health.read_probe("smtp", ok("p", "tcp_probe", {})) == (False, "no connection")
    assert health.read_probe("smtp", None) == (False, "no connection")
    long = {"connected": False, "error": "e" * 700}
    assert health.read_probe("pop", ok("p", "tcp_probe", long)) == (False, "e" * 500)


def test_a_login_page_answers_as_a_mailenable_page_or_a_redirect_to_the_login() -> None:
    def read(result: dict[str, Any] | None) -> tuple[bool, str]:
        return health.read_probe("webmail", ok("p", "http_probe", result) if result is not None else None)

    assert read(page(200, title="MailEnable Web Mail")) == (True, "200 MailEnable page")
    assert read(page(200, title="MAILENABLE")) == (True, "200 MailEnable page")
    assert read(page(200, title="IIS Windows Server")) == (False, "HTTP 200")
    assert read({"status": 200, "title": None, "location": None, "error": None}) == (False, "HTTP 200")
    assert read(page(302, location="/mewebmail/Mondo/lang/sys/Login.aspx")) == (True, "302 to the login page")
    assert read(page(302, location="/somewhere/else")) == (False, "HTTP 302")
    assert read({"status": 302, "title": None, "location": None, "error": None}) == (False, "HTTP 302")
    assert read(page(404, title="MailEnable", location="login.aspx")) == (False, "HTTP 404")
    assert read(page(200, location="login.aspx")) == (False, "HTTP 200")
    assert read(page(302, title="MailEnable")) == (False, "HTTP 302")
    assert read(None) == (False, "no answer")
    assert read({}) == (False, "no answer")


def test_a_page_error_names_the_status_when_there_was_one() -> None:
    def read(result: dict[str, Any]) -> tuple[bool, str]:
        return health.read_probe("webadmin", ok("p", "http_probe", result))

    assert read(page(None, err="The remote name could not be resolved")) == (
        False,
        "The remote name could not be resolved",
    )
    assert read(page(500, title="MailEnable", err="Internal Server Error")) == (
        False,
        "HTTP 500: Internal Server Error",
    )
    assert read(page(0, err="x")) == (False, "HTTP 0: x")
    assert read(page(503, err="z" * 600)) == (False, ("HTTP 503: " + "z" * 600)[:500])


def test_a_failed_probe_step_reports_the_hosts_message_and_an_expect_failed_step_keeps_its_result() -> None:
    assert health.read_probe("smtp", error("p", "tcp_probe", "Access is denied", "win32_5")) == (
        False,
        "Access is denied",
    )
    assert health.read_probe("webmail", error("p", "http_probe", "m" * 700)) == (False, "m" * 500)
    bad = failed("p", "tcp_probe", tcp("220 other"))
    assert health.read_probe("smtp", bad) == (False, "unexpected banner '220 other'")
    good = failed("p", "tcp_probe", tcp(SMTP_BANNER))  # a miss elsewhere: the banner itself is MailEnable's
    assert health.read_probe("smtp", good) == (True, SMTP_BANNER)
    # an error step without an error object is read from its result
    bare = StepResult(id="p", op="tcp_probe", status="error", result=tcp(SMTP_BANNER))
    assert health.read_probe("smtp", bare) == (True, SMTP_BANNER)
    # an ok step that (wrongly) carries an error object is still read from its result
    odd = StepResult(
        id="p", op="tcp_probe", status="ok", result=tcp(SMTP_BANNER), error=StepError(code="c", message="m")
    )
    assert health.read_probe("smtp", odd) == (True, SMTP_BANNER)


# --- the baseline -----------------------------------------------------------------------------


def test_baseline_keeps_existing_services_and_every_probe_read() -> None:
    results = {
        "b.services": ok(
            "b.services",
            "service_get",
            {
                "services": [
                    service("MEMTAS"),
                    service("MEPOPS", "Stopped"),
                    service("MEIMAPS", exists=False),
                    "not a service",
                    service("Spooler"),
                ]
            },
        ),
        "b.smtp": ok("b.smtp", "tcp_probe", tcp(SMTP_BANNER)),
        "b.smtp.v6": ok("b.smtp.v6", "tcp_probe", {"connected": False, "error": "refused"}),
        "b.imap": error("b.imap", "tcp_probe", "boom"),
        "b.webmail": ok("b.webmail", "http_probe", page(200, title="MailEnable")),
        "b.webadmin": ok("b.webadmin", "http_probe", page(404)),
        "x.pop": ok("x.pop", "tcp_probe", tcp(POP_BANNER)),
    }
    base = health.baseline_from(results, "b.", "b.services")
    assert base.services == {
        "MEMTAS": service("MEMTAS"),
        "MEPOPS": service("MEPOPS", "Stopped"),
        "Spooler": service("Spooler"),
    }
    assert base.probes == {"smtp": True, "smtp.v6": False, "imap": False, "webmail": True, "webadmin": False}
    assert base.details == {
        "smtp": SMTP_BANNER,
        "smtp.v6": "refused",
        "imap": "boom",
        "webmail": "200 MailEnable page",
        "webadmin": "HTTP 404",
    }


def test_baseline_without_a_service_read_has_no_services() -> None:
    services = {"services": [service("MEMTAS")]}
    for step in (
        error("b.services", "service_get", "denied"),
        failed("b.services", "service_get", services),
        StepResult(id="b.services", op="service_get", status="ok", result=None),
        ok("b.services", "service_get", {"services": None}),
        ok("b.services", "service_get", {}),
    ):
        assert health.baseline_from({"b.services": step}, "b.", "b.services").services == {}
    assert health.baseline_from({}, "b.", "b.services") == health.Baseline()
    only = health.baseline_from({"b.services": ok("b.services", "service_get", services)}, "b.", "b.services")
    assert only.services == {"MEMTAS": service("MEMTAS")}
    assert only.probes == {}


def test_running_is_the_mailenable_services_that_were_running_whatever_their_case() -> None:
    base = health.Baseline(
        services={
            "mepops": service("mepops"),
            "MEMTAS": service("MEMTAS"),
            "MEIMAPS": service("MEIMAPS", "Stopped"),
            "MELCS": {"name": "MELCS", "state": "Running"},  # exists not said: not judged
            "MESMTPCS": service("MESMTPCS", exists=False),
            "W3SVC": service("W3SVC"),
        }
    )
    assert base.running() == ["MEMTAS", "mepops"]
    assert base.state_of("MEPOPS") == service("mepops")
    assert base.state_of("meimaps") == service("MEIMAPS", "Stopped")
    assert base.state_of("MEPOCS") is None


# --- the re-check after the change ------------------------------------------------------------


def test_check_steps_settle_then_expect_what_answered_before() -> None:
    base = health.Baseline(
        services={"MEMTAS": service("MEMTAS"), "MEPOPS": service("MEPOPS"), "MEIMAPS": service("MEIMAPS", "Stopped")},
        probes={"smtp": True, "smtp.v6": False, "pop.v6": True, "webmail": True, "webadmin": False},
    )
    steps = health.check_steps("h.", base, TARGETS)
    banner = {"smtp": r"^220 .*Mail ?Enable", "pop": r"^\+OK .*MailEnable"}
    assert steps == [
        Step(id="h.settle", op="sleep", args={"seconds": 15}),
        Step(
            id="h.services",
            op="service_get",
            args={"names": ["MEMTAS", "MEPOPS"]},
            expect={"services.0.state": "Running", "services.1.state": "Running"},
            critical=True,
        ),
        Step(
            id="h.smtp",
            op="tcp_probe",
            args={"host": "127.0.0.1", "port": 2525, "send": "EHLO fleet-lockdown", "timeout_ms": 10_000},
            expect={"connected": True},
            expect_match={"banner": banner["smtp"]},
            critical=True,
        ),
        Step(
            id="h.pop.v6",
            op="tcp_probe",
            args={"host": "::1", "port": 1110, "send": "CAPA", "timeout_ms": 10_000},
            expect={"connected": True},
            expect_match={"banner": banner["pop"]},
            critical=True,
        ),
        Step(
            id="h.webmail",
            op="http_probe",
            args={"url": WEBMAIL, "allow_self_signed": True, "timeout_ms": 10_000},
            expect={"error": None},
            expect_match={"status": r"^(200|302)$"},
            critical=True,
        ),
    ]


def test_nothing_running_and_nothing_answering_is_only_the_settle() -> None:
    base = health.Baseline(services={"MEPOPS": service("MEPOPS", "Stopped")}, probes={"smtp": False})
    assert health.check_steps("h.", base, None) == [Step(id="h.settle", op="sleep", args={"seconds": 15})]


# --- the health list --------------------------------------------------------------------------


def _by_check(entries: list[HealthCheckResult]) -> dict[str, tuple[str, str]]:
    checks = [e.check for e in entries]
    assert len(checks) == len(set(checks)), checks
    return {e.check: (e.status.value, e.detail) for e in entries}


def test_report_after_a_healthy_change() -> None:
    base = health.Baseline(
        services={
            "MEMTAS": service("MEMTAS"),
            "MESMTPCS": service("MESMTPCS"),
            "MEPOPS": service("MEPOPS"),
            "MEIMAPS": service("MEIMAPS"),
        },
        probes={"smtp": True, "smtp.v6": True, "pop": True, "imap": True, "webmail": True, "webadmin": True},
    )
    running = [service(n) for n in ("MEIMAPS", "MEMTAS", "MEPOPS", "MESMTPCS")]
    results = {
        "h.services": ok("h.services", "service_get", {"services": running}),
        "h.smtp": ok("h.smtp", "tcp_probe", tcp(SMTP_BANNER)),
        "h.smtp.v6": ok("h.smtp.v6", "tcp_probe", tcp(SMTP_BANNER)),
        "h.pop": ok("h.pop", "tcp_probe", tcp(POP_BANNER)),
        "h.imap": ok("h.imap", "tcp_probe", tcp(IMAP_BANNER)),
        "h.webmail": ok("h.webmail", "http_probe", page(302, location="/Mondo/lang/sys/login.aspx")),
        "h.webadmin": ok("h.webadmin", "http_probe", page(200, title="MailEnable Administration")),
    }
    out = health.report("h.", base, TARGETS, results)
    assert [e.check for e in out] == ["services", "smtp", "pop", "imap", "mta", "webmail", "webadmin"]
    assert out[0] == HealthCheckResult(
        check="services", status=HealthStatus.OK, detail="running: MEIMAPS, MEMTAS, MEPOPS, MESMTPCS"
    )
    assert _by_check(out) == {
        "services": ("ok", "running: MEIMAPS, MEMTAS, MEPOPS, MESMTPCS"),
        "smtp": ("ok", "port 2525 (127.0.0.1 and ::1)"),
        "pop": ("ok", "port 1110"),
        "imap": ("ok", "port 1143"),
        "mta": ("ok", "MEMTAS is Running"),
        "webmail": ("ok", WEBMAIL),
        "webadmin": ("ok", ADMIN),
    }


def test_report_names_what_went_down() -> None:
    base = health.Baseline(
        services={"MEMTAS": service("MEMTAS"), "MEPOPS": service("MEPOPS"), "MEIMAPS": service("MEIMAPS")},
        probes={"pop": True, "pop.v6": True, "imap": True, "imap.v6": True, "webmail": True},
    )
    results = {
        "h.services": failed(
            "h.services",
            "service_get",
            {"services": [service("MEMTAS", "Stopped"), service("mepops", "Running")]},
        ),
        "h.pop": ok("h.pop", "tcp_probe", tcp(POP_BANNER)),
        "h.pop.v6": failed("h.pop.v6", "tcp_probe", {"connected": False, "error": "refused"}),
        "h.imap": failed("h.imap", "tcp_probe", {"connected": False, "error": "timed out"}),
        "h.imap.v6": ok("h.imap.v6", "tcp_probe", tcp(IMAP_BANNER)),
        "h.webmail": failed("h.webmail", "http_probe", page(500, err="Internal Server Error")),
    }
    out = _by_check(health.report("h.", base, HealthTargets(webmail_url=WEBMAIL), results))
    assert out == {
        "services": ("failed", "MEIMAPS is missing; MEMTAS is Stopped"),
        "smtp": ("not_checked", "not installed"),
        "pop": ("failed", "port 110; on ::1: refused"),
        "imap": ("failed", "IMAP on port 143: timed out (::1 answers)"),  # never "127.0.0.1 and ::1"
        "mta": ("failed", "MEMTAS is Stopped"),
        "webmail": ("failed", f"{WEBMAIL}: HTTP 500: Internal Server Error"),
        "webadmin": ("not_checked", "not checked: no URL configured"),
    }


def test_report_of_a_check_not_reached_or_failing_before_the_change() -> None:
    base = health.Baseline(
        services={
            "MESMTPCS": service("MESMTPCS"),
            "MEPOPS": service("MEPOPS", "Stopped"),
            "MEIMAPS": service("MEIMAPS"),
        },
        probes={"pop": False, "webmail": False},
        details={"pop": "no connection", "webmail": "HTTP 404"},
    )
    out = _by_check(health.report("h.", base, TARGETS, {}))
    assert out == {
        "services": ("not_checked", "not reached"),
        "smtp": ("not_checked", "not reached"),
        "pop": ("not_checked", "did not answer before the change (no connection)"),
        "imap": ("not_checked", "not reached"),
        "webmail": ("not_checked", f"{WEBMAIL}: did not answer before the change"),
        "webadmin": ("not_checked", f"{ADMIN}: did not answer before the change"),
    }
    # an earlier answer is quoted even when it was empty; a service not installed wins
    base = health.Baseline(services={"MEPOPS": service("MEPOPS")}, probes={"pop": False, "smtp": False})
    out = _by_check(health.report("h.", base, None, {}))
    assert out["pop"] == ("not_checked", "did not answer before the change ()")
    assert out["smtp"] == ("not_checked", "not installed")


def test_report_without_running_services_has_no_services_entry() -> None:
    base = health.Baseline(services={"MEMTAS": service("MEMTAS", "Stopped")})
    out = health.report("h.", base, None, {})
    assert [e.check for e in out] == ["smtp", "pop", "imap", "webmail", "webadmin"]
    # a services step without a result (the read itself failed) is not a services reading
    results = {"h.services": error("h.services", "service_get", "denied")}
    running = health.Baseline(services={"MEMTAS": service("MEMTAS")})
    out = health.report("h.", running, None, results)
    assert _by_check(out)["services"] == ("not_checked", "not reached")
    assert "mta" not in _by_check(out)


def test_report_of_services_all_stopped_and_a_mta_that_went_down() -> None:
    base = health.Baseline(services={"MEMTAS": service("MEMTAS")})
    results = {"h.services": ok("h.services", "service_get", {"services": [service("MEMTAS", "Stopped")]})}
    out = _by_check(health.report("h.", base, None, results))
    assert out["services"] == ("failed", "MEMTAS is Stopped")
    assert out["mta"] == ("failed", "MEMTAS is Stopped")
    results = {"h.services": ok("h.services", "service_get", {"services": None})}
    out = _by_check(health.report("h.", base, None, results))
    assert out["services"] == ("failed", "MEMTAS is missing")
    assert out["mta"] == ("failed", "MEMTAS is not checked")


def test_report_details_are_cut_to_1000_characters() -> None:
    base = health.Baseline(
        services={"MESMTPCS": service("MESMTPCS"), "MEPOPS": service("MEPOPS")},
        probes={"smtp": True, "smtp.v6": True, "pop": False},
        details={"pop": "p" * 1200},
    )
    results = {
        "h.smtp": error("h.smtp", "tcp_probe", "a" * 600),
        "h.smtp.v6": error("h.smtp.v6", "tcp_probe", "b" * 600),
    }
    out = _by_check(health.report("h.", base, None, results))
    expected = ("SMTP on port 25: " + "a" * 500 + "; on ::1: " + "b" * 500)[:1000]
    assert out["smtp"] == ("failed", expected)
    assert out["pop"] == ("not_checked", ("did not answer before the change (" + "p" * 1200)[:1000])


# --- what went wrong --------------------------------------------------------------------------


def _control(step_id: str, name: str, action: str = "start") -> Step:
    return Step(id=step_id, op="service_control", args={"name": name, "action": action, "timeout_ms": 60_000})


def test_start_failures_name_the_service_and_windows_message() -> None:
    steps = [
        _control("c1", "MEPOPS"),
        _control("c2", "MEIMAPS"),
        _control("c3", "MESMTPCS"),
        _control("c4", "MEMTAS", "stop"),
        _control("c5", "MELCS"),
        _control("c6", "MEPOCS"),
        _control("c7", "MEPOPCS"),
        Step(id="c8", op="logon_check", args={"user": "IME_SYSTEM", "password": "x"}),
        _control("c9", "W3SVC"),
    ]
    results = {
        "c1": ok("c1", "service_control", {"changed": False, "state": "Stopped", "code": 1069}),
        "c2": ok("c2", "service_control", {"changed": True, "state": "Running", "code": 0}),
        "c3": ok("c3", "service_control", {"changed": False, "state": "Stopped", "code": 4242}),
        "c4": ok("c4", "service_control", {"changed": False, "state": "Running", "code": 1053}),
        "c5": ok("c5", "service_control", {"changed": False, "code": "1058"}),
        "c6": StepResult(id="c6", op="service_control", status="error", error=StepError(code="x", message="y")),
        "c8": ok("c8", "logon_check", {"ok": False, "code": 1326}),
        "c9": ok("c9", "service_control", {"changed": False, "state": "Stopped", "code": 1058}),
    }
    assert health.start_failures(steps, results) == [
        "MEPOPS did not start: The service did not start due to a logon failure. [Win32 error 1069]",
        "MESMTPCS did not start: error [Win32 error 4242]",
        "W3SVC did not start: The service cannot be started, either because it is disabled or because it has no "
        "enabled devices associated with it. [Win32 error 1058]",
    ]


def test_regressions_are_the_failed_checks_of_the_program() -> None:
    results = {
        "h.settle": error("h.settle", "sleep", "interrupted"),
        "h.services": failed(
            "h.services",
            "service_get",
            {"services": [service("MEPOPS"), service("MEIMAPS", "Stopped"), service("MEMTAS", "Paused")]},
        ),
        "h.smtp": ok("h.smtp", "tcp_probe", tcp(SMTP_BANNER)),
        "h.smtp.v6": failed("h.smtp.v6", "tcp_probe", {"connected": False, "error": "refused"}),
        "h.pop": failed("h.pop", "tcp_probe", tcp("+OK Dovecot ready")),
        "h.webmail": error("h.webmail", "http_probe", "The operation has timed out"),
        "h.webadmin": StepResult(id="h.webadmin", op="http_probe", status="skipped"),
        "b.imap": error("b.imap", "tcp_probe", "not ours"),
        "c1": error("c1", "service_control", "not a check"),
    }
    assert health.regressions("h.", results) == [
        "MEIMAPS is Stopped; MEMTAS is Paused",
        "smtp on ::1: refused",
        "pop: unexpected banner '+OK Dovecot ready'",
        "webmail: The operation has timed out",
    ]


def test_a_services_regression_without_a_reading() -> None:
    running = failed("h.services", "service_get", {"services": [service("MEPOPS")]})
    assert health.regressions("h.", {"h.services": running}) == ["services not running"]
    unread = error("h.services", "service_get", "Access is denied", "win32_5")
    assert health.regressions("h.", {"h.services": unread}) == ["services: Access is denied"]
    empty = failed("h.services", "service_get", {"services": None})
    assert health.regressions("h.", {"h.services": empty}) == ["services not running"]
