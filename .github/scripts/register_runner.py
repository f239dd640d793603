"""Register this Windows runner as a managed server for `agent_record` / `agent_selftest` (CI only).

Run from the repository root after `manage.py migrate`: the runner's loopback WinRM listener
(HTTP 5985, NTLM with message encryption), the local administrator the workflow created
(FLEET_RECORD_USER / FLEET_RECORD_PASSWORD from the environment, never printed).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from servers.binding import bind  # noqa: E402
from servers.choices import AuthMethod, TLSVerify, WinRMScheme  # noqa: E402
from servers.models import Credential, Customer, Server  # noqa: E402

customer, _ = Customer.objects.get_or_create(name="GitHub runner")
credential = Credential(
    customer=customer, name="runner-admin", username=".\\" + os.environ["FLEET_RECORD_USER"], auth=AuthMethod.NTLM
)
credential.set_secret(os.environ["FLEET_RECORD_PASSWORD"])
credential.save()
server = Server(
    customer=customer,
    name="RUNNER",
    address="127.0.0.1",
    winrm_scheme=WinRMScheme.HTTP,
    winrm_port=5985,
    tls_verify=TLSVerify.OFF,
    credential=credential,
)
bind(server)
server.save()
print(f"registered {server.name} ({server.address}:{server.winrm_port}, NTLM)")
