// An MCP client built on the official TypeScript SDK's OAuth support, kept running as an editor would be,
// to show it stays connected. Steps, each answered with one JSON line on stdout:
//   start                    → {"authorize": url}; the test plays the user and writes the code to stdin
//   code                     → connects, calls echo: {"echo": text, "access": token, "refresh": bool}
//   "call" (token expired)   → calls echo again, refreshing silently: {"echo", "access", "refreshed"}
//   "call" (grant revoked)   → the call fails and the client is sent to authorize: {"error", "authorize"}
//
// Usage: node oauth-refresh-client.mjs SDK_DIR ENDPOINT REDIRECT_URL
import { createInterface } from "node:readline";
import { Provider, sdk } from "./oauth-provider.mjs";

const [sdkDir, endpoint, redirectUrl] = process.argv.slice(2);
const { Client } = await sdk(sdkDir, "client/index.js");
const { StreamableHTTPClientTransport } = await sdk(sdkDir, "client/streamableHttp.js");
const { UnauthorizedError } = await sdk(sdkDir, "client/auth.js");

// It registers for authorization_code alone and asks for no scope of its own, so whatever refresh token
// it gets is the server's doing.
const provider = new Provider(redirectUrl, "Orrery e2e editor", ["authorization_code"]);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const print = (v) => console.log(JSON.stringify(v));
const newClient = () => new Client({ name: "orrery-e2e-editor", version: "1.0.0" });

let transport = new StreamableHTTPClientTransport(new URL(endpoint), { authProvider: provider });
try {
  await newClient().connect(transport);
  throw new Error("connected without authorization");
} catch (err) {
  if (!(err instanceof UnauthorizedError)) throw err;
}
print({ authorize: provider.redirected });
provider.redirected = undefined;
const { value: code } = await lines.next();
await transport.finishAuth(code.trim());

transport = new StreamableHTTPClientTransport(new URL(endpoint), { authProvider: provider });
const client = newClient();
await client.connect(transport);
const { tools } = await client.listTools();
const echo = tools.find((t) => t.name.endsWith("echo")).name;
const call = async (message) => (await client.callTool({ name: echo, arguments: { message } })).content?.[0]?.text ?? "";

let before = provider.tokens();
print({ echo: await call("first call"), access: before.access_token, refresh: Boolean(before.refresh_token) });

await lines.next(); // the access token has expired
const text = await call("after the access token expired");
const after = provider.tokens();
print({
  echo: text, access: after.access_token,
  refreshed: after.access_token !== before.access_token && Boolean(after.refresh_token) && after.refresh_token !== before.refresh_token,
});

await lines.next(); // the grant has been revoked
try {
  await call("after revocation");
  print({ error: "", authorize: provider.redirected });
} catch (err) {
  print({ error: String(err), unauthorized: err instanceof UnauthorizedError, authorize: provider.redirected });
}
await client.close().catch(() => {});
process.exit(0);
