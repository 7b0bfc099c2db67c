"""Keystroke echo through hearth's Hypha service (issue 26), against the same through
hearth's REST polling routes and through a seed-style Hypha terminal service, all in one run
against one local Hypha server.

- hypha: write_to_terminal("x") then read_from_terminal until the echo, through the bridge
  (Hypha RPC -> bridge -> hearth REST on loopback -> the box's forwarded port -> the
  workstation's agent over vsock -> its PTY).
- rest: POST .../input then GET .../output?wait_ms long-polls until the echo (no Hypha).
- seed: the seed's design (a service holding a bash PTY on this host, read with select), on
  the same Hypha server: what Hypha RPC costs by itself, with no VM behind it.

Run by bench/hypha.sh, which starts Hypha and `hearth serve`; prints JSON.
"""

import asyncio
import json
import os
import pty
import select
import statistics
import sys
import time

import httpx
from hypha_rpc import connect_to_server

HYPHA_URL, BRIDGE_TOKEN, USER_TOKEN, HEARTH_URL, ADMIN_TOKEN, ROUNDS = sys.argv[1:7]
ROUNDS = int(ROUNDS)


def summary(samples):
    s = sorted(samples)
    return {"n": len(s), "p50_ms": round(statistics.median(s), 2), "p95_ms": round(s[int(len(s) * 0.95) - 1], 2), "min_ms": round(s[0], 2)}


async def read_until(read, want=("$ ", "# ")):
    """Calls `read` (new output as text) until one of `want` came."""
    seen = ""
    while not any(w in seen for w in want):
        seen += await read()
    return seen


async def echo_rounds(write, read_until_echo):
    out = []
    for i in range(ROUNDS + 3):
        t = time.perf_counter()
        await write("x")
        await read_until_echo()
        if i >= 3:  # warm-up
            out.append((time.perf_counter() - t) * 1000)
    await write("\x15")  # Ctrl-U: the line is clean again
    return out


def seed_style_service():
    """A bash on a PTY of this host behind write/read functions, as the seed's service does."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("bash", ["bash", "--norc", "-i"])

    def write_to_terminal(terminal_id, command, context=None):
        os.write(fd, command.encode())
        return {"success": True}

    def read_from_terminal(terminal_id, context=None):
        ready, _, _ = select.select([fd], [], [], 0.1)
        data = os.read(fd, 1024).decode(errors="replace") if ready else ""
        return {"success": True, "output": data}

    return pid, {"id": "seed-style-terminal", "config": {"visibility": "public", "require_context": True},
                 "write_to_terminal": write_to_terminal, "read_from_terminal": read_from_terminal}


async def main():
    results = {}
    # hearth's REST polling, as the administrator.
    http = httpx.AsyncClient(base_url=HEARTH_URL + "/api/v1", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=300)
    ws = (await http.post("/workstations", json={"name": "bench", "mem_size_mib": 512, "disk_size_gib": 1})).json()
    t = (await http.post(f"/workstations/{ws['id']}/terminals", json={})).json()
    base = f"/workstations/{ws['id']}/terminals/{t['id']}"
    cursor = {"at": 0}

    async def rest_read():
        o = (await http.get(base + "/output", params={"after": cursor["at"], "wait_ms": 5000})).json()
        cursor["at"] = o["next"]
        return o["data"]

    await read_until(rest_read)
    results["rest"] = summary(await echo_rounds(lambda d: http.post(base + "/input", json={"data": d}), lambda: read_until(rest_read, ("x",))))

    # The same through Hypha and the bridge, as a Hypha user.
    user = await connect_to_server({"server_url": HYPHA_URL, "token": USER_TOKEN})
    svc = None
    for _ in range(120):
        try:
            svc = await user.get_service("ws-user-hearth-bridge/hearth-terminal-service")
            break
        except Exception:
            await asyncio.sleep(1)
    term = await svc.create_terminal({"name": "bench-hypha", "mem_size_mib": 512, "disk_size_gib": 1})
    tid = term["terminal_id"]

    async def hypha_read():
        return (await svc.read_from_terminal(tid))["output"]

    await read_until(hypha_read)
    results["hypha"] = summary(await echo_rounds(lambda d: svc.write_to_terminal(tid, d), lambda: read_until(hypha_read, ("x",))))
    await svc.delete_workstation(term["workstation_id"])

    # The seed's design on the same Hypha server.
    provider = await connect_to_server({"server_url": HYPHA_URL, "token": BRIDGE_TOKEN})
    pid, service = seed_style_service()
    await provider.register_service(service)
    seed = await user.get_service("ws-user-hearth-bridge/seed-style-terminal")

    async def seed_read():
        return (await seed.read_from_terminal("t"))["output"]

    await read_until(seed_read)
    results["seed"] = summary(await echo_rounds(lambda d: seed.write_to_terminal("t", d), lambda: read_until(seed_read, ("x",))))
    os.kill(pid, 9)
    os.waitpid(pid, 0)

    await http.delete(f"/workstations/{ws['id']}")
    await user.disconnect()
    await provider.disconnect()
    print(json.dumps(results, indent=2))


asyncio.run(main())
