"""Save an emulated host's state to JSON and load it back onto a freshly built host of the same spec.

The snapshot is `to_state_dict()` plus what it deliberately leaves out: account and service
passwords (in clear: the lab folder is private, 0600) and the mutation/work counters. Loading
rebuilds the host from its spec and then overwrites accounts, rights, files, keys, services,
SQL and Defender with the snapshot, with counting switched off (it is the same state, not a change).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from winlab.windows import security as sec
from winlab.windows.accounts import LocalGroup, LocalUser
from winlab.windows.host import WindowsHost
from winlab.windows.lsa import ALL_RIGHTS
from winlab.windows.services import START_MODE_NAMES
from winlab.windows.sql import Database, DatabaseUser, Login
from winlab.windows.tree import Node, RegValue, SecuredTree

FORMAT = 1


def snapshot(host: WindowsHost) -> dict[str, Any]:
    """Everything needed to restore the host (secrets included)."""
    return {
        "format": FORMAT,
        "state": host.to_state_dict(),
        "secrets": {
            "users": {u.name: u.password for u in host.accounts.users.values()},
            "services": {s.name: s.password for s in host.services.all() if s.password},
        },
        "counters": {"mutations": host.ctx.mutations, "work": host.ctx.work},
    }


def write_private_json(path: Path, data: object) -> None:
    """Write JSON atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, sort_keys=True)
    os.replace(tmp, path)


def restore(host: WindowsHost, data: dict[str, Any]) -> None:
    """Load a `snapshot()` onto `host` (built from the same spec); raises ValueError on a bad snapshot."""
    if data.get("format") != FORMAT:
        raise ValueError("unknown snapshot format")
    state: dict[str, Any] = data["state"]
    secrets: dict[str, dict[str, str]] = data.get("secrets", {})
    ctx = host.ctx
    ctx.building = True
    try:
        _restore_accounts(host, state["accounts"], secrets.get("users", {}))
        for right in sorted(ALL_RIGHTS):
            host.lsa.set_holders(right, state["lsa"].get(right, []))
        _restore_tree(host.fs.tree, state["fs"], registry=False)
        host.fs.contents = dict(state.get("file_contents", {}))
        _restore_tree(host.registry.tree, state["registry"], registry=True)
        _restore_services(host, state["services"], secrets.get("services", {}))
        if host.sql is not None and state.get("sql"):
            _restore_sql(host, state["sql"])
        host.defender.exclusion_paths = list(state["defender"].get("exclusion_paths", []))
        counters = data.get("counters", {})
        ctx.mutations = int(counters.get("mutations", 0))
        ctx.work = int(counters.get("work", 0))
    finally:
        ctx.building = False


def _restore_accounts(host: WindowsHost, accounts: dict[str, Any], passwords: dict[str, str]) -> None:
    sam = host.accounts
    users: dict[str, Any] = accounts["users"]
    for stale in [u for u in sam.users.values() if u.name not in users]:
        del sam.users[stale.name.lower()]
    for name, entry in users.items():
        user = sam.users.get(name.lower())
        password = passwords.get(name, user.password if user else "")
        if user is None or user.sid != entry["sid"]:
            sam.users[name.lower()] = LocalUser(name, entry["sid"], password, int(entry["flags"]))
        else:
            user.flags = int(entry["flags"])
            user.password = password
    groups: dict[str, Any] = accounts["groups"]
    for stale_group in [g for g in sam.groups.values() if g.name not in groups]:
        del sam.groups[stale_group.name.lower()]
    for name, entry in groups.items():
        existing = sam.groups.get(name.lower())
        if existing is None or existing.sid != entry["sid"]:
            sam.groups[name.lower()] = LocalGroup(name, entry["sid"], members=list(entry["members"]))
        else:
            existing.members = list(entry["members"])
    rids = [int(u.sid.rsplit("-", 1)[1]) for u in sam.users.values() if u.sid.startswith(sam.machine_sid + "-")]
    rids += [int(g.sid.rsplit("-", 1)[1]) for g in sam.groups.values() if g.sid.startswith(sam.machine_sid + "-")]
    sam._next_rid = max([1000, *(r + 1 for r in rids if r >= 1000)])


def _restore_tree(tree: SecuredTree, nodes: dict[str, Any], *, registry: bool) -> None:
    wanted = {path.lower() for path in nodes}
    for old in list(tree.root.walk()):
        node = old
        if node.parent is not None and node.path.lower() not in wanted and node.name.lower() in node.parent.children:
            del node.parent.children[node.name.lower()]
    for path in sorted(nodes, key=lambda p: p.count("\\")):
        entry = nodes[path]
        sd = sec.from_sddl(entry["sddl"])
        found = tree.find(path)
        if found is None:
            parent_path, _, name = path.rpartition("\\")
            parent = tree.find(parent_path)
            if parent is None:
                continue
            if registry:
                kind = sec.ObjectKind.REGISTRY_KEY
            else:
                kind = sec.ObjectKind.DIRECTORY if entry.get("dir") else sec.ObjectKind.FILE
            found = Node(name=name, kind=kind, sd=sd, parent=parent)
            parent.children[name.lower()] = found
        node = found
        node.sd = sd
        if registry:
            node.values = {
                k: RegValue(str(v[0]), tuple(v[1]) if isinstance(v[1], list) else v[1])
                for k, v in entry.get("values", {}).items()
            }


def _restore_services(host: WindowsHost, services: dict[str, Any], passwords: dict[str, str]) -> None:
    manager = host.services
    for name, entry in services.items():
        if not manager.exists(name):
            continue
        svc = manager.get(name)
        svc.start_name = str(entry["start_name"])
        svc.password = passwords.get(name, "")
        svc.start_mode = START_MODE_NAMES[str(entry["start_mode"]).lower()]
        svc.delayed_auto = bool(entry.get("delayed_auto", False))
        if entry["state"] == "Running" and not svc.running:
            manager.start(name)
        elif entry["state"] != "Running" and svc.running:
            manager.stop(name)


def _restore_sql(host: WindowsHost, sql: dict[str, Any]) -> None:
    server = host.sql
    assert server is not None
    server.logins = {
        name.lower(): Login(name, str(entry["sid"]), False, bool(entry["sysadmin"]))
        for name, entry in sql["logins"].items()
    }
    server.databases = {}
    for db_name, entry in sql["databases"].items():
        db = Database(db_name)
        for user_name, user in entry["users"].items():
            db.users[user_name.lower()] = DatabaseUser(user_name, str(user["login_sid"]), set(user["roles"]))
        db.grants = {(g.rsplit(":", 1)[0], g.rsplit(":", 1)[1]) for g in entry["grants"]}
        server.databases[db_name.lower()] = db
