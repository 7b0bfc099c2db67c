"""A Hypha client of hearth's Hypha service, for hypha_e2e.rs: one scenario per run, each
step checked here, "ok <step>" printed for each, exit status 0 only when all passed.

    python hypha_client.py SERVER_URL TOKEN|- SERVICE SCENARIO [ARG]
"""

import asyncio
import json
import sys
import time

from hypha_rpc import connect_to_server

URL, TOKEN, SERVICE, SCENARIO = sys.argv[1:5]
ARG = sys.argv[5] if len(sys.argv) > 5 else None


def ok(step):
    print("ok", step, flush=True)


def code_of(e):
    """hearth's error code from a RemoteException: the JSON after `HearthError: ` in it."""
    line = next(l for l in str(e).splitlines() if l.startswith("HearthError: "))
    return json.loads(line[len("HearthError: "):])["code"]


async def refused(what, call, want):
    try:
        got = await call
    except Exception as e:
        code = code_of(e)
        assert code == want, f"{what}: code {code}, not {want}: {e}"
        ok(f"{what} refused: {want}")
        return
    raise AssertionError(f"{what}: answered {got!r}, not refused with {want}")


PROMPT = ("$ ", "# ")


async def read_until(svc, tid, want, seen="", deadline_s=60):
    """Reads until `want` (or one of a tuple of them) came."""
    wants = want if isinstance(want, tuple) else (want,)
    deadline = time.time() + deadline_s
    while not any(w in seen for w in wants):
        assert time.time() < deadline, f"no {want!r} in {seen!r}"
        r = await svc.read_from_terminal(tid)
        assert r["success"], r
        seen += r["output"]
        if not r["output"]:
            await asyncio.sleep(0.05)
    return seen


async def main():
    cfg = {"server_url": URL}
    if TOKEN != "-":
        cfg["token"] = TOKEN
    server = await connect_to_server(cfg)
    # The bridge may still be (re)registering: wait for it.
    deadline = time.time() + 120
    while True:
        try:
            svc = await server.get_service(SERVICE)
            break
        except Exception as e:
            assert time.time() < deadline, f"no service {SERVICE}: {e}"
            await asyncio.sleep(1)
    ok("service found")
    await SCENARIOS[SCENARIO](svc)
    await server.disconnect()


async def owner(svc):
    t = await svc.create_terminal()
    assert t["success"] and ":" in t["terminal_id"], t
    tid = t["terminal_id"]
    ok("create_terminal")
    seen = await read_until(svc, tid, PROMPT)
    assert (await svc.write_to_terminal(tid, 'python3 -c "print(6*7)"\r'))["success"]
    seen = await read_until(svc, tid, "\r42\r\n", seen)
    assert seen.count("print(6*7)") == 1, f"output repeated: {seen!r}"
    ok("write and read: 42")
    screen = await svc.get_screen_content(tid)
    lines = screen["content"].split("\n")
    assert "42" in lines and screen["rows"] == 24 and screen["cols"] == 80, screen
    ok("screen")
    assert (await svc.resize_terminal(tid, 30, 100))["success"]
    await svc.write_to_terminal(tid, "stty size\r")
    await read_until(svc, tid, "30 100")
    assert (await svc.get_screen_content(tid))["rows"] == 30
    ok("resize: stty size says 30 100")
    listed = await svc.list_terminals()
    assert tid in listed["terminals"], listed
    ok("list_terminals")
    # The terminal for the next scenarios (another user's, the UI's view of it).
    print("terminal", tid, flush=True)


async def intruder(svc):
    tid = ARG
    listed = await svc.list_terminals()
    assert tid not in listed["terminals"], listed
    ok("another user's terminals are not listed")
    await refused("write to another user's terminal", svc.write_to_terminal(tid, "id\r"), "not_found")
    await refused("read another user's terminal", svc.read_from_terminal(tid), "not_found")
    await refused("screen of another user's terminal", svc.get_screen_content(tid), "not_found")
    await refused("close another user's terminal", svc.close_terminal(tid), "not_found")
    await refused("exec in another user's workstation", svc.exec(tid.split(":")[0], "id"), "not_found")


async def not_allowed(svc):
    await refused("an email off the allowlist", svc.create_terminal(), "not_on_allowlist")


async def anonymous(svc):
    await refused("an anonymous caller", svc.list_terminals(), "forbidden")


async def bad(svc):
    tid = ARG
    await refused("an unknown terminal", svc.write_to_terminal("w000000000000:tnope", "x"), "not_found")
    await refused("a terminal id of no shape", svc.read_from_terminal("nonsense"), "not_found")
    await refused("a 10 MB write", svc.write_to_terminal(tid, "x" * (10 << 20)), "payload_too_large")
    await refused("rows that are not a number", svc.resize_terminal(tid, "thirty", 80), "invalid_field")
    await refused("a command that is not text", svc.write_to_terminal(tid, 42), "invalid_field")
    await refused("a terminal id that is not text", svc.get_screen_content(["x"]), "invalid_field")
    await refused("too many rows", svc.resize_terminal(tid, 5000, 80), "invalid_field")
    # hearth's own functions: a workstation, a command, a file up and down, delete.
    ws = await svc.create_workstation({"name": "scratch"})
    assert ws["name"] == "scratch" and ws["state"] == "running", ws
    r = await svc.exec(ws["id"], "echo exec-$((6*7))")
    assert r["exit_code"] == 0 and r["stdout"] == "exec-42\n", r
    ok("exec")
    assert (await svc.upload_file(ws["id"], "/tmp/hearth-hypha-up.txt", "up and down\n"))["bytes"] == 12
    got = await svc.download_file(ws["id"], "/tmp/hearth-hypha-up.txt")
    assert got["content"] == b"up and down\n", got
    ok("upload_file and download_file")
    listed = await svc.list_workstations()
    assert ws["id"] in [w["id"] for w in listed["workstations"]], listed
    t = await svc.create_terminal({"name": "gone soon"})
    assert (await svc.delete_workstation(t["workstation_id"]))["success"]
    await refused("a call after its workstation was deleted", svc.write_to_terminal(t["terminal_id"], "x"), "not_found")
    assert (await svc.delete_workstation(ws["id"]))["success"]
    # After all that, good calls still work.
    assert tid in (await svc.list_terminals())["terminals"]
    ok("the bridge still answers")


async def seed(svc):
    """The seed page's own order: create, resize (not awaited), keystrokes one by one, reads
    polled, the screen, close."""
    t = await svc.create_terminal()
    if not t["success"]:
        raise Exception(t["error"])
    tid = t["terminal_id"]
    resize = asyncio.ensure_future(svc.resize_terminal(tid, 24, 80))
    seen = await read_until(svc, tid, PROMPT)
    for key in "echo seed-$((1+1))\r":
        r = await svc.write_to_terminal(tid, key)
        assert r["success"], r
    seen = await read_until(svc, tid, "seed-2\r\n", seen)
    await resize
    assert "seed-2" in (await svc.get_screen_content(tid))["content"]
    await svc.close_terminal(tid)
    assert tid not in (await svc.list_terminals())["terminals"]
    ok("the seed's sequence")


async def setup(svc):
    """The seed's create with a startup script: it runs once at the first boot, in the
    workstation's terminal `setup`, whose output the caller reads."""
    t = await svc.create_terminal({"name": "seeded", "startup_script": "echo seeded-$((6*7))"})
    await read_until(svc, f"{t['workstation_id']}:setup", "seeded-42")
    assert (await svc.delete_workstation(t["workstation_id"]))["success"]
    ok("the startup script ran in terminal setup")


async def empty(svc):
    """A caller new to hearth: nothing of theirs yet."""
    assert (await svc.list_terminals())["terminals"] == []
    assert (await svc.list_workstations())["workstations"] == []
    ok("nothing listed")


SCENARIOS = {"empty": empty, "setup": setup, "owner": owner, "intruder": intruder, "not_allowed": not_allowed, "anonymous": anonymous, "bad": bad, "seed": seed}

asyncio.run(main())
