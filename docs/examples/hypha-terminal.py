"""hearth's Hypha service from Python: a terminal in your workstation, a command, its answer.

    pip install hypha-rpc
    HYPHA_SERVER_URL=https://hypha.aicell.io HYPHA_TOKEN=… \
    HEARTH_SERVICE=<workspace>/hearth-terminal-service python hypha-terminal.py

HYPHA_TOKEN is your own Hypha token: hearth acts as you (docs/hypha.md).
"""

import asyncio
import json
import os
import time

from hypha_rpc import connect_to_server


def hearth_error(e):
    """hearth's {code, message, status, field} from a refused call's RemoteException."""
    for line in str(e).splitlines():
        if line.startswith("HearthError: "):
            return json.loads(line[len("HearthError: "):])
    return None


async def read_until(svc, tid, wanted, seen="", timeout=60):
    """Reads the terminal's new output until one of `wanted` appears in it."""
    deadline = time.monotonic() + timeout
    while not any(w in seen for w in wanted):
        if time.monotonic() > deadline:
            raise TimeoutError(f"none of {wanted} in {seen!r}")
        seen += (await svc.read_from_terminal(tid))["output"]
    return seen


async def main():
    server = await connect_to_server({"server_url": os.environ["HYPHA_SERVER_URL"], "token": os.environ["HYPHA_TOKEN"]})
    # `<workspace>/<service id>`: hearth logs it when it registers.
    svc = await server.get_service(os.environ["HEARTH_SERVICE"])

    t = await svc.create_terminal()  # in your workstation `hypha`, made if needed
    tid = t["terminal_id"]
    await read_until(svc, tid, ["$ ", "# "])  # the shell's prompt
    await svc.write_to_terminal(tid, 'python3 -c "print(6*7)"\r')
    await read_until(svc, tid, ["\r42\r\n"])
    print("python3 says 42")
    print((await svc.get_screen_content(tid))["content"])
    await svc.close_terminal(tid)

    try:
        await svc.write_to_terminal(tid, "ls\r")
    except Exception as e:  # closed: hearth says not_found
        print("after close:", hearth_error(e)["code"])
    await server.disconnect()


asyncio.run(main())
