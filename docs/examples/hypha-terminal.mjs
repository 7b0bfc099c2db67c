// hypha-terminal.mjs — drive a hearth terminal from Node.js over Hypha RPC.
//
// How to run:
//   npm install hypha-rpc@0.21.40
//   HYPHA_SERVER_URL=https://hypha.example.org HYPHA_TOKEN=<your token> node hypha-terminal.mjs
//
// And HEARTH_SERVICE=<workspace>/hearth-terminal-service (hearth logs it when it
// registers).
//
// hypha-rpc needs a global WebSocket. Node >= 22 has one built in. On Node 20/21
// either run `node --experimental-websocket hypha-terminal.mjs`, or
// `npm install ws` and this script will use it.
//
// It creates a terminal, waits for the shell prompt, runs
// `python3 -c "print(6*7)"`, waits for the 42, prints the screen, closes the
// terminal and exits 0 (1 with a message on any failure or after 60 s).

if (typeof globalThis.WebSocket === "undefined") {
  try {
    globalThis.WebSocket = (await import("ws")).WebSocket;
  } catch {
    console.error("No global WebSocket: use Node >= 22, `node --experimental-websocket`, or `npm install ws`.");
    process.exit(1);
  }
}
const { hyphaWebsocketClient } = await import("hypha-rpc");

const SERVER_URL = process.env.HYPHA_SERVER_URL;
const TOKEN = process.env.HYPHA_TOKEN;
const SERVICE_ID = process.env.HEARTH_SERVICE;
const DEADLINE = Date.now() + 60_000;

// Hearth reports errors as remote exceptions whose message contains a line
// `HearthError: {"code": "...", "message": "...", "status": N}`.
// Returns that code (e.g. "not_found"), or null for any other error.
function hearthErrorCode(err) {
  const match = /HearthError: (\{.*\})/.exec(String(err?.message ?? err));
  if (!match) return null;
  try {
    return JSON.parse(match[1]).code ?? null;
  } catch {
    return null;
  }
}

// Drop ANSI escape sequences (colours, bracketed-paste toggles, ...).
const stripAnsi = (s) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07/g, "");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Poll read_from_terminal (which returns only output new to this caller) until
// test(all output so far) is true; throw at the deadline or if the shell exits.
async function waitForOutput(hearth, terminalId, test, what) {
  let seen = "";
  while (Date.now() < DEADLINE) {
    const { output, exited } = await hearth.read_from_terminal(terminalId);
    seen += output;
    if (test(stripAnsi(seen))) return seen;
    if (exited) throw new Error(`terminal exited while waiting for ${what}`);
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}; last output: ${JSON.stringify(seen.slice(-200))}`);
}

async function main() {
  if (!SERVER_URL || !TOKEN || !SERVICE_ID) throw new Error("set HYPHA_SERVER_URL, HYPHA_TOKEN and HEARTH_SERVICE");

  const server = await hyphaWebsocketClient.connectToServer({
    server_url: SERVER_URL,
    token: TOKEN,
    logger: null, // silence hypha-rpc's connection logs; remove when debugging
  });
  try {
    const hearth = await server.getService(SERVICE_ID);
    const { terminal_id } = await hearth.create_terminal();
    console.log(`created terminal ${terminal_id}`);
    try {
      // A prompt is output ending in "$ " or "# ".
      await waitForOutput(hearth, terminal_id, (s) => /[$#] $/.test(s), "shell prompt");

      // "\r" is Enter. The echoed command line comes back too, so look for a
      // line that is exactly "42" (bash may put escapes + "\r" before it).
      await hearth.write_to_terminal(terminal_id, 'python3 -c "print(6*7)"\r');
      await waitForOutput(hearth, terminal_id, (s) => /[\r\n]42\r?\n/.test(s), "42");
      console.log("got 42");

      const screen = await hearth.get_screen_content(terminal_id);
      console.log(`--- screen (${screen.rows}x${screen.cols}) ---\n${screen.content}\n---`);
    } finally {
      await hearth.close_terminal(terminal_id);
      console.log(`closed terminal ${terminal_id}`);
    }

    // Errors: writing to an unknown terminal throws; pull out hearth's code.
    try {
      await hearth.write_to_terminal("no-such-terminal", "echo hi\r");
      console.log("unexpected: writing to an unknown terminal succeeded");
    } catch (err) {
      console.log(`unknown terminal -> error code: ${hearthErrorCode(err)}`);
    }
  } finally {
    await server.disconnect();
  }
}

// Hard stop if a connect or call hangs; 5 s of grace after the deadline lets
// the polling loop above fail first and still close its terminal.
setTimeout(() => {
  console.error("error: timed out (60 s deadline)");
  process.exit(1);
}, DEADLINE - Date.now() + 5_000).unref();

main().then(
  () => process.exit(0),
  (err) => {
    // Remote errors carry the provider's traceback; its last line is the gist.
    const lines = String(err?.message ?? err).trim().split("\n");
    console.error(`error: ${lines[lines.length - 1]}`);
    process.exit(1);
  },
);
