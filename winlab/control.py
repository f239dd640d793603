"""The control surface of a running lab: token-protected HTTP on 127.0.0.1, and its client.

`serve` starts `ControlServer` on a free loopback port and writes `<lab_dir>/control.json`
(0600: the URL and a random bearer token). `ControlClient` reads that file. Endpoints:
`GET /hosts`, `GET /state?host=NAME` (whole state + counters), `POST /fault` (JSON body with
`host` and the `Lab.fault` keywords), `POST /reboot` (JSON `{"host": NAME}`; answers the boot
report), `POST /smtp` (JSON `host` and any of `SMTP_KEYS`: the host's relay policy, AUTH mode and
certificate; answers the SMTP state). Anything else, or a wrong token, is refused.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from winlab.lab import Lab
from winlab.persist import write_private_json

CONTROL_FILE: Final = "control.json"
MAX_BODY: Final = 64 * 1024
FAULT_KEYS: Final = frozenset(
    {"latency", "auth_failure", "timeout", "drop", "deny", "gpo_revert", "gpo_refresh_in", "down", "clear"}
)
SMTP_KEYS: Final = frozenset({"relay", "auth_mode", "certificate_days", "certificate_name"})


class ControlError(RuntimeError):
    """The control surface refused a request (or could not be reached)."""


class ControlServer:
    """Serves `lab`'s state and faults on 127.0.0.1 until `stop()`."""

    def __init__(self, lab: Lab, lab_dir: Path) -> None:
        self.lab = lab
        self.token = secrets.token_urlsafe(32)
        self.path = lab_dir / CONTROL_FILE
        handler = _handler_for(self)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="winlab-control", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self.thread.start()
        write_private_json(self.path, {"url": self.url, "token": self.token})

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.path.unlink(missing_ok=True)


def _handler_for(control: ControlServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "winlab-control"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _authorised(self) -> bool:
            given = self.headers.get("Authorization", "")
            return hmac.compare_digest(given.encode(), f"Bearer {control.token}".encode())

        def _reply(self, status: int, data: object) -> None:
            body = json.dumps(data, sort_keys=True, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if not self._authorised():
                self._reply(401, {"error": "bad token"})
                return
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            try:
                if url.path == "/hosts":
                    self._reply(200, control.lab.inventory())
                elif url.path == "/state":
                    self._reply(200, control.lab.state(query.get("host", [""])[0]))
                else:
                    self._reply(404, {"error": "not found"})
            except KeyError:
                self._reply(404, {"error": "no such host"})

        def do_POST(self) -> None:
            if not self._authorised():
                self._reply(401, {"error": "bad token"})
                return
            if self.path not in ("/fault", "/reboot", "/smtp"):
                self._reply(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length", "0") or 0)
            if not 0 < length <= MAX_BODY:
                self._reply(400, {"error": "body required (at most 64 KiB)"})
                return
            try:
                body = json.loads(self.rfile.read(length))
                name = str(body.pop("host"))
                if self.path == "/reboot":
                    if body:
                        raise ValueError(f"unknown reboot keys {sorted(body)}")
                    self._reply(200, {"ok": True, "boot": control.lab.reboot(name)})
                    return
                if self.path == "/smtp":
                    unknown = set(body) - SMTP_KEYS
                    if unknown:
                        raise ValueError(f"unknown smtp keys {sorted(unknown)}")
                    self._reply(200, {"ok": True, "smtp": control.lab.configure_smtp(name, **body)})
                    return
                unknown = set(body) - FAULT_KEYS
                if unknown:
                    raise ValueError(f"unknown fault keys {sorted(unknown)}")
                control.lab.fault(name, **body)
            except KeyError:
                self._reply(404, {"error": "no such host"})
                return
            except (ValueError, TypeError) as exc:
                self._reply(400, {"error": str(exc)})
                return
            self._reply(200, {"ok": True})

    return Handler


class ControlClient:
    """Talks to a running lab through `<lab_dir>/control.json`."""

    def __init__(self, lab_dir: Path, timeout: float = 30.0) -> None:
        try:
            data = json.loads((lab_dir / CONTROL_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ControlError(f"no running lab in {lab_dir} ({exc})") from None
        self.url = str(data["url"])
        if not self.url.startswith("http://127."):
            raise ControlError("the control endpoint must be on loopback")
        self.token = str(data["token"])
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310 - loopback only
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ControlError(f"{exc.code}: {exc.read().decode(errors='replace')}") from None
        except OSError as exc:
            raise ControlError(f"cannot reach the lab at {self.url}: {exc}") from None

    def hosts(self) -> Any:
        return self._call("GET", "/hosts")

    def state(self, host: str) -> Any:
        return self._call("GET", "/state?" + urllib.parse.urlencode({"host": host}))

    def fault(self, host: str, **fault: Any) -> Any:
        return self._call("POST", "/fault", {"host": host, **fault})

    def smtp(self, host: str, **settings: Any) -> Any:
        """Change one host's SMTP settings (relay, auth_mode, certificate_days, certificate_name);
        returns {"ok": True, "smtp": {...the state, "starttls", "certificate"}}."""
        return self._call("POST", "/smtp", {"host": host, **settings})

    def reboot(self, host: str) -> Any:
        """Restart one host; returns {"ok": True, "boot": {stopped, started, failed, delayed}}."""
        return self._call("POST", "/reboot", {"host": host})
