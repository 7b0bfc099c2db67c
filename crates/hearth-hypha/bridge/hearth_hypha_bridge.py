"""hearth as a Hypha service: registers one service on a Hypha server and turns each call
into calls of hearth's HTTP API, made as the Hypha user who called.

Started and supervised by `hearth serve` (crates/hearth-hypha); configured by its
environment. Every decision (who may do what, quotas, the allowlist, audit) is the server's:
this program passes on who called (as the Hypha server put it in the call's context) with
the key only it was given, and hands back hearth's answers. Errors are raised with hearth's
code and message as JSON, which callers find in the first line of the RemoteError.

The seed's functions (oeway/hypha-terminal) keep their names, arguments and result shapes
(`{"success": True, ...}`), so its page and scripts work unchanged; the rest follow hearth's
API.
"""

import asyncio
import collections
import json
import os
import secrets
import sys
import urllib.parse

import httpx
from hypha_rpc import connect_to_server

HEARTH_URL = os.environ["HEARTH_URL"].rstrip("/")
KEY = os.environ["HEARTH_BRIDGE_KEY"]
SERVER_URL = os.environ["HYPHA_SERVER_URL"]
TOKEN = os.environ["HYPHA_TOKEN"]
WORKSPACE = os.environ.get("HYPHA_WORKSPACE", "")
SERVICE_ID = os.environ.get("HEARTH_SERVICE_ID", "hearth-terminal-service")
VISIBILITY = os.environ.get("HEARTH_SERVICE_VISIBILITY", "public")

API = "/api/v1"
# Read cursors kept per (caller, terminal); the oldest go past this many.
MAX_CURSORS = 10_000
# Longest a terminal read waits for output, ms (the seed's reads block up to 0.1 s).
READ_WAIT_MS = 100
# Largest write_to_terminal: hearth's own limit on terminal input (docs/api.md), checked
# here too, since hearth answers a larger body by closing the connection mid-send.
MAX_INPUT = 64 << 10
# Largest file download_file returns (a Hypha message carries it whole).
MAX_DOWNLOAD = 64 << 20
# How long to wait for hearth: a create boots a workstation, which takes a while in a box.
SLOW = httpx.Timeout(600.0, connect=10.0)


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


class HearthError(Exception):
    """An error with hearth's code: its message is the JSON `{code, message, field?, status}`."""

    def __init__(self, code, message, status=None, field=None):
        body = {"code": code, "message": message}
        if field:
            body["field"] = field
        if status:
            body["status"] = status
        super().__init__(json.dumps(body))


def as_caller(context):
    """The headers that make a request to hearth the caller's: the bridge's key, and who
    called as the Hypha server says."""
    return {"authorization": f"Bearer {KEY}", "x-hearth-hypha-caller": caller_of(context)}


def caller_of(context):
    """Who called, as the Hypha server says: the header hearth reads it from."""
    user = (context or {}).get("user") or {}
    if not user.get("id"):
        raise HearthError("unauthenticated", "this service needs a Hypha caller (require_context)")
    who = {
        "id": user.get("id"),
        "email": user.get("email"),
        "roles": list(user.get("roles") or []),
        "is_anonymous": bool(user.get("is_anonymous")),
    }
    return json.dumps(who)


def need_str(field, value, limit=4096):
    if not isinstance(value, str) or not value or len(value) > limit:
        raise HearthError("invalid_field", f"{field} must be a non-empty string of at most {limit} characters", 400, field)
    return value


def need_int(field, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise HearthError("invalid_field", f"{field} must be an integer", 400, field)
    return value


def split_terminal(terminal_id):
    """A terminal's id here is `<workstation id>:<terminal id>`."""
    ws, _, tid = need_str("terminal_id", terminal_id, 200).partition(":")
    if not ws or not tid:
        raise HearthError("not_found", f"no terminal `{terminal_id}`", 404, "terminal_id")
    return quote(ws), quote(tid)


def quote(part):
    return urllib.parse.quote(part, safe="")


class Bridge:
    def __init__(self):
        verify = not HEARTH_URL.startswith("https://127.") and not HEARTH_URL.startswith("https://[::1]")
        self.http = httpx.AsyncClient(base_url=HEARTH_URL, timeout=SLOW, verify=verify)
        self.cursors = collections.OrderedDict()

    async def call(self, context, method, path, **kw):
        """hearth's answer to one API call as the caller, or a HearthError with its code."""
        try:
            resp = await self.http.request(method, API + path, headers=as_caller(context), **kw)
        except httpx.HTTPError as e:
            raise HearthError("unavailable", f"hearth did not answer: {e}", 503) from None
        raise_for(resp)
        return resp

    async def json(self, context, method, path, **kw):
        resp = await self.call(context, method, path, **kw)
        return resp.json() if resp.content else {}

    # The seed's functions.

    async def create_terminal(self, recipe=None, context=None):
        """A new terminal. No recipe: in the caller's workstation `hypha` (made and started
        when needed); a recipe name: in `hypha-<recipe>`, of that image recipe; a dict (the
        seed's `{name, python_packages, startup_script}`, or any of hearth's create fields): a
        new workstation of its own, whose packages and script run once at its first boot
        in its terminal `setup` (hearth's `setup`)."""
        if isinstance(recipe, dict):
            spec = dict(recipe)
            packages = spec.pop("python_packages", None) or []
            script = spec.pop("startup_script", None) or ""
            if packages or script:
                spec["setup"] = {"python_packages": packages, "script": script}
            spec.setdefault("name", "hypha-" + secrets.token_hex(3))
            ws = await self.json(context, "POST", "/workstations", json=spec)
        elif recipe is None or isinstance(recipe, str):
            name = "hypha" if not recipe else f"hypha-{recipe}"
            ws = await self.ensure_workstation(context, name, recipe or None)
        else:
            raise HearthError("invalid_field", "recipe must be a recipe name, a dict or None", 400, "recipe")
        t = await self.json(context, "POST", f"/workstations/{quote(ws['id'])}/terminals", json={})
        return {"success": True, "terminal_id": f"{ws['id']}:{t['id']}", "workstation_id": ws["id"], "name": ws.get("name")}

    async def ensure_workstation(self, context, name, recipe):
        listed = await self.json(context, "GET", "/workstations")
        mine = caller_id(context)
        for ws in listed.get("workstations", []):
            if ws.get("name") == name and ws.get("owner") == f"hypha:{mine}":
                if ws.get("state") in ("stopped", "crashed", "paused"):
                    action = "resume" if ws["state"] == "paused" else "start"
                    ws = await self.json(context, "POST", f"/workstations/{quote(ws['id'])}/{action}")
                return ws
        spec = {"name": name}
        if recipe:
            spec["recipe"] = recipe
        return await self.json(context, "POST", "/workstations", json=spec)

    async def write_to_terminal(self, terminal_id, command, context=None):
        ws, tid = split_terminal(terminal_id)
        if not isinstance(command, str):
            raise HearthError("invalid_field", "command must be a string", 400, "command")
        size = len(command.encode())
        if size > MAX_INPUT:
            raise HearthError("payload_too_large", f"command: {size} bytes; at most {MAX_INPUT} at once", 413, "command")
        await self.call(context, "POST", f"/workstations/{ws}/terminals/{tid}/input", json={"data": command})
        return {"success": True}

    async def read_from_terminal(self, terminal_id, context=None):
        """What the terminal printed since this caller's last read of it."""
        ws, tid = split_terminal(terminal_id)
        key = (caller_id(context), terminal_id)
        after = self.cursors.get(key, 0)
        out = await self.json(context, "GET", f"/workstations/{ws}/terminals/{tid}/output", params={"after": after, "wait_ms": READ_WAIT_MS})
        self.cursors[key] = out["next"]
        self.cursors.move_to_end(key)
        while len(self.cursors) > MAX_CURSORS:
            self.cursors.popitem(last=False)
        return {"success": True, "output": out["data"], "missed": out["missed"], "exited": out["exited"]}

    async def get_screen_content(self, terminal_id, context=None):
        ws, tid = split_terminal(terminal_id)
        s = await self.json(context, "GET", f"/workstations/{ws}/terminals/{tid}/screen")
        return {"success": True, "content": s["text"], "rows": s["rows"], "cols": s["cols"], "cursor_row": s["cursor_row"], "cursor_col": s["cursor_col"], "title": s["title"]}

    async def resize_terminal(self, terminal_id, rows, cols, context=None):
        ws, tid = split_terminal(terminal_id)
        size = {"rows": need_int("rows", rows), "cols": need_int("cols", cols)}
        await self.call(context, "POST", f"/workstations/{ws}/terminals/{tid}/resize", json=size)
        return {"success": True}

    async def close_terminal(self, terminal_id, context=None):
        ws, tid = split_terminal(terminal_id)
        await self.call(context, "DELETE", f"/workstations/{ws}/terminals/{tid}")
        self.cursors.pop((caller_id(context), terminal_id), None)
        return {"success": True}

    async def list_terminals(self, context=None):
        """The live terminals of the caller's running workstations (hibernated ones are not
        woken to be listed)."""
        listed = await self.json(context, "GET", "/workstations")
        ids, details = [], []
        for ws in listed.get("workstations", []):
            if ws.get("state") != "running" or ws.get("owner") != f"hypha:{caller_id(context)}":
                continue
            terms = await self.json(context, "GET", f"/workstations/{quote(ws['id'])}/terminals")
            for t in terms.get("terminals", []):
                if t.get("ended_unix_ms") is None:
                    tid = f"{ws['id']}:{t['id']}"
                    ids.append(tid)
                    details.append({"terminal_id": tid, "workstation_id": ws["id"], "workstation_name": ws.get("name"), "title": t.get("title", ""),
                                    "rows": t.get("rows"), "cols": t.get("cols"), "exited": t.get("exited"), "created_unix_ms": t.get("created_unix_ms")})
        return {"success": True, "terminals": ids, "details": details}

    # hearth's own.

    async def create_workstation(self, config=None, context=None):
        spec = dict(config or {})
        if not isinstance(config, (dict, type(None))):
            raise HearthError("invalid_field", "config must be a dict of hearth's create fields", 400, "config")
        spec.setdefault("name", "hypha-" + secrets.token_hex(3))
        return await self.json(context, "POST", "/workstations", json=spec)

    async def list_workstations(self, context=None):
        listed = await self.json(context, "GET", "/workstations")
        return {"success": True, "workstations": listed.get("workstations", [])}

    async def delete_workstation(self, workstation_id, context=None):
        ws = quote(need_str("workstation_id", workstation_id, 200))
        await self.call(context, "DELETE", f"/workstations/{ws}")
        for key in [k for k in self.cursors if k[1].startswith(workstation_id + ":")]:
            del self.cursors[key]
        return {"success": True}

    async def exec(self, workstation_id, command, timeout=60, context=None):
        """Runs `command` (a shell line, run by bash -lc, or an argv list) as the image's
        user: `{exit_code, signal, timed_out, truncated, stdout, stderr}`."""
        ws = quote(need_str("workstation_id", workstation_id, 200))
        if isinstance(command, str):
            argv = ["bash", "-lc", command]
        elif isinstance(command, list) and command and all(isinstance(a, str) for a in command):
            argv = command
        else:
            raise HearthError("invalid_field", "command must be a string or a list of strings", 400, "command")
        body = {"argv": argv, "timeout_secs": need_int("timeout", timeout)}
        result = await self.json(context, "POST", f"/workstations/{ws}/exec", json=body)
        return {"success": True, **result}

    async def upload_file(self, workstation_id, path, content, context=None):
        ws = quote(need_str("workstation_id", workstation_id, 200))
        if isinstance(content, str):
            content = content.encode()
        if not isinstance(content, (bytes, bytearray)):
            raise HearthError("invalid_field", "content must be bytes or a string", 400, "content")
        await self.call(context, "PUT", f"/workstations/{ws}/files", params={"path": need_str("path", path)}, content=bytes(content))
        return {"success": True, "bytes": len(content)}

    async def download_file(self, workstation_id, path, context=None):
        ws = quote(need_str("workstation_id", workstation_id, 200))
        url = f"{API}/workstations/{ws}/files"
        async with self.http.stream("GET", url, params={"path": need_str("path", path)}, headers=as_caller(context)) as resp:
            if resp.status_code >= 400:
                await resp.aread()
                raise_for(resp)
            data = bytearray()
            async for chunk in resp.aiter_bytes():
                data += chunk
                if len(data) > MAX_DOWNLOAD:
                    raise HearthError("payload_too_large", f"download_file returns at most {MAX_DOWNLOAD} bytes; use hearth's API for larger files", 413)
        return {"success": True, "content": bytes(data), "size": len(data)}


def raise_for(resp):
    """hearth's error answer as a HearthError with its code, message and field."""
    if resp.status_code < 400:
        return
    try:
        err = resp.json()["error"]
        code, message, field = err.get("code", "error"), err.get("message", ""), err.get("field")
    except (ValueError, KeyError, TypeError):
        code, message, field = "error", resp.text[:500], None
    raise HearthError(code, message, resp.status_code, field)


def caller_id(context):
    return ((context or {}).get("user") or {}).get("id")


FUNCTIONS = [
    "create_terminal", "write_to_terminal", "read_from_terminal", "get_screen_content", "resize_terminal", "close_terminal", "list_terminals",
    "create_workstation", "list_workstations", "delete_workstation", "exec", "upload_file", "download_file",
]


async def serve_once(bridge):
    """Connects, registers, and stays until the connection is given up for good (hypha-rpc
    reconnects and re-registers by itself after a drop; it gives up when the server refuses
    it, e.g. a token it no longer takes)."""
    cfg = {"server_url": SERVER_URL, "token": TOKEN}
    if WORKSPACE:
        cfg["workspace"] = WORKSPACE
    server = await connect_to_server(cfg)
    try:
        service = {
            "id": SERVICE_ID,
            "name": "hearth terminals",
            "description": "Isolated Linux workstations (Firecracker microVMs) and their terminals, from hearth",
            "config": {"visibility": VISIBILITY, "require_context": True},
        }
        for name in FUNCTIONS:
            service[name] = getattr(bridge, name)
        info = await server.register_service(service)
        log(f"registered {info['id']} (visibility {VISIBILITY}); callers use {server.config.workspace}/{SERVICE_ID}")
        server.on("services_registered", lambda ev: log(f"registered again after a reconnect: {ev}"))
        while not getattr(getattr(server.rpc, "_connection", None), "_closed", False):
            await asyncio.sleep(2)
        log("the Hypha server refused to take the connection back; connecting afresh")
    finally:
        try:
            await asyncio.wait_for(server.disconnect(), 5)
        except Exception:
            pass


async def main():
    bridge = Bridge()
    delay = 1
    while True:
        try:
            await serve_once(bridge)
            delay = 1
        except Exception as e:
            log(f"connecting to {SERVER_URL}: {type(e).__name__}: {e}; trying again in {delay} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
