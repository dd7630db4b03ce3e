// A small MCP client for remit's end-to-end tests
// (crates/remit-gateway/tests/gateway/mcp_e2e.rs): it drives remit with the official MCP
// TypeScript SDK (`Client` + `StreamableHTTPClientTransport`), so what remit is tested
// against is what real MCP clients send, not what we think they send.
//
//   node e2e/client.mjs <url> list
//   node e2e/client.mjs <url> call <tool> '<json arguments>' [--progress]
//
// Options (each may also come from the environment):
//   --bearer <key>     Authorization: Bearer <key>       (REMIT_E2E_BEARER)
//   --purpose <name>   Remit-Purpose: <name>             (REMIT_E2E_PURPOSE)
//   --progress         ask for progress notifications (the SDK sends a progressToken) and
//                      report each one with the milliseconds since the call started
//   REMIT_E2E_TRACE=1  log every HTTP exchange (method, headers, status) on stderr
//
// It prints exactly one JSON line on stdout and exits 0 when the MCP exchange completed,
// even when the tool's result has `isError: true`:
//   list  -> {"tools": ["echo", ...]}
//   call  -> {"result": <CallToolResult>}  plus, with --progress,
//            "progress": [{"progress": 1, "total": 4, "at_ms": 251}, ...], "result_at_ms": 1003
// On a transport or protocol failure (including a JSON-RPC error answer) it prints the
// error on stderr and exits 1; on bad usage it exits 2.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

function usage(message) {
  console.error(`client.mjs: ${message}`);
  console.error("usage: node client.mjs <url> list | call <tool> <json-args> [--progress]");
  console.error("       [--bearer <key>] [--purpose <purpose>]");
  process.exit(2);
}

const positional = [];
const opts = {
  bearer: process.env.REMIT_E2E_BEARER || undefined,
  purpose: process.env.REMIT_E2E_PURPOSE || undefined,
  progress: false,
};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--bearer" || a === "--purpose") {
    if (i + 1 >= argv.length) usage(`${a} needs a value`);
    opts[a.slice(2)] = argv[++i];
  } else if (a === "--progress") {
    opts.progress = true;
  } else if (a.startsWith("--")) {
    usage(`unknown option ${a}`);
  } else {
    positional.push(a);
  }
}
const [url, command, ...rest] = positional;
if (!url || !command) usage("a URL and a command are required");
let endpoint;
try {
  endpoint = new URL(url);
} catch {
  usage(`not a URL: ${url}`);
}

const headers = {};
if (opts.bearer) headers["Authorization"] = `Bearer ${opts.bearer}`;
if (opts.purpose) headers["Remit-Purpose"] = opts.purpose;

// With REMIT_E2E_TRACE set, every request the SDK makes is logged on stderr.
const trace = process.env.REMIT_E2E_TRACE ? console.error : () => {};
const tracingFetch = async (input, init = {}) => {
  const shown = Object.fromEntries(new Headers(init.headers ?? {}).entries());
  if (shown.authorization) shown.authorization = "Bearer <redacted>";
  trace(`> ${init.method ?? "GET"} ${input} ${JSON.stringify(shown)}${init.body ? ` ${init.body}` : ""}`);
  const resp = await fetch(input, init);
  trace(`< ${resp.status} ${resp.headers.get("content-type") ?? "-"} session=${resp.headers.get("mcp-session-id") ?? "-"}`);
  return resp;
};

const transport = new StreamableHTTPClientTransport(endpoint, {
  requestInit: { headers },
  fetch: tracingFetch,
});
const client = new Client({ name: "remit-e2e", version: "0.0.0" });
const REQUEST_TIMEOUT_MS = 30_000;

async function run() {
  await client.connect(transport, { timeout: REQUEST_TIMEOUT_MS });
  if (command === "list") {
    if (rest.length !== 0) usage("list takes no arguments");
    const { tools } = await client.listTools(undefined, { timeout: REQUEST_TIMEOUT_MS });
    return { tools: tools.map((t) => t.name) };
  }
  if (command === "call") {
    if (rest.length < 1 || rest.length > 2) usage("call needs <tool> and optionally <json-args>");
    const [name, json = "{}"] = rest;
    let args;
    try {
      args = JSON.parse(json);
    } catch (e) {
      usage(`arguments are not JSON: ${e.message}`);
    }
    const started = Date.now();
    const progress = [];
    const options = { timeout: REQUEST_TIMEOUT_MS };
    if (opts.progress) {
      options.onprogress = (p) => progress.push({ ...p, at_ms: Date.now() - started });
      options.resetTimeoutOnProgress = true;
    }
    const result = await client.callTool({ name, arguments: args }, undefined, options);
    const out = { result };
    if (opts.progress) {
      out.progress = progress;
      out.result_at_ms = Date.now() - started;
    }
    return out;
  }
  usage(`unknown command ${command}`);
}

let out;
try {
  out = await run();
} catch (e) {
  console.error(`client.mjs: ${e?.stack ?? e}`);
  process.exit(1);
}
// End the session politely (DELETE); a failure here does not undo the exchange.
try {
  await transport.terminateSession();
} catch (e) {
  trace(`session end failed: ${e?.message ?? e}`);
}
await client.close().catch(() => {});
process.stdout.write(`${JSON.stringify(out)}\n`);
process.exit(0);
