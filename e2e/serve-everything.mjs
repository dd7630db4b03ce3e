// Starts the reference MCP server `@modelcontextprotocol/server-everything`, unmodified, in
// Streamable HTTP mode for remit's end-to-end tests
// (crates/remit-gateway/tests/gateway/mcp_e2e.rs).
//
// The server itself only takes a port (the `PORT` environment variable, default 3001) and
// listens on every interface. This launcher binds it to loopback instead and lets the caller
// ask for any free port:
//
//   node e2e/serve-everything.mjs [port]      # port 0 (the default) = a free port
//
// Once the server accepts connections, it prints one line on stdout:
//
//   remit-e2e listening http://127.0.0.1:<port>/mcp
//
// The server's own log lines go to stdout and stderr as well; readers must skip them.

import net from "node:net";

const requested = process.argv[2] ?? process.env.PORT ?? "0";
if (!/^\d+$/.test(requested)) {
  console.error(`serve-everything: port must be a number, got ${JSON.stringify(requested)}`);
  process.exit(2);
}
// server-everything reads PORT and calls `app.listen(PORT, callback)`.
process.env.PORT = requested;

// Every listen the server makes with a bare port is bound to 127.0.0.1 only, and the address
// it actually got is announced.
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" || (typeof args[0] === "string" && /^\d+$/.test(args[0]))) {
    const port = Number(args[0]);
    const callbacks = args.slice(1).filter((a) => typeof a === "function");
    args = [{ port, host: "127.0.0.1" }, ...callbacks];
    this.once("listening", () => {
      const { address, port: bound } = this.address();
      console.log(`remit-e2e listening http://${address}:${bound}/mcp`);
    });
  }
  return listen.apply(this, args);
};

await import("@modelcontextprotocol/server-everything/dist/transports/streamableHttp.js");
