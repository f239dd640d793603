"""Re-record the shipped transcripts from winlab: `.venv/bin/python -m tests.transcripts.make_winlab_transcripts`.

Starts a lab of the hosts below, reaches each over real WinRM (NTLM over HTTP) with the transport jobs use
(`remote.transport.run_program`) and records it with `lockdown.engine.transcript.record`, as
`manage.py agent_record` does (without needing a database). These transcripts come from winlab, not Windows.
"""

from __future__ import annotations

import json
import tempfile
from functools import partial
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from lockdown.engine.transcript import record
from lockdown.rules.contract import HealthTargets
from remote import HostConnection, Scheme, TlsVerify
from remote.connection import AuthMethod
from remote.transport import run_program
from winlab.lab import Lab
from winlab.windows.clock import ManualClock
from winlab.windows.factory import HostSpec
from winlab.windows.mailenable import Edition

HERE: Final = Path(__file__).resolve().parent
HOSTS: Final = {
    "winlab-2019-professional.json": HostSpec(name="S19REC", os="2019", edition=Edition.PROFESSIONAL, version="10.43"),
    "winlab-2016-enterprise-sql.json": HostSpec(
        name="S16SQLREC", os="2016", edition=Edition.ENTERPRISE, version="10.43", sql=True
    ),
}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(list(HOSTS.values()), lab_dir=Path(tmp), clock=ManualClock(), time_scale=0.0, mail_ports={})
        with lab:
            for file_name, spec in HOSTS.items():
                entry = next(e for e in lab.inventory()["hosts"] if e["name"] == spec.name)
                conn = HostConnection(
                    address=entry["address"],
                    username=entry["username"],
                    password=entry["password"],
                    scheme=Scheme.HTTP,
                    port=entry["winrm"]["http_port"],
                    auth=AuthMethod.NTLM,
                    tls_verify=TlsVerify.OFF,
                    retry_attempts=1,
                    run_timeout_s=120.0,
                )
                ports = entry["mail_ports"]
                web = entry.get("webmail") or {}
                # the page as import_winlab records it: on the host itself, under "localhost"
                parts = urlsplit(str(web.get("url") or ""))
                url = urlunsplit((parts.scheme, "localhost", parts.path, parts.query, "")) if web else None
                targets = HealthTargets(
                    smtp_port=ports["smtp"] or None,
                    pop_port=ports["pop"] or None,
                    imap_port=ports["imap"] or None,
                    webmail_url=url,
                    allow_self_signed=bool(web.get("self_signed")),
                )
                document = record(partial(run_program, conn), recorded_from="winlab", targets=targets)
                text = json.dumps(document, indent=1, sort_keys=True) + "\n"
                (HERE / file_name).write_text(text, encoding="utf-8")
                print(f"{file_name}: {len(document['invocations'])} invocations from {spec.name}")


if __name__ == "__main__":
    main()
