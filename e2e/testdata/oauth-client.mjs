// An MCP client built on the official TypeScript SDK's OAuth support, started cold: it knows only the
// endpoint URL. It discovers the authorization server from the endpoint's 401, registers, and prints the
// authorization URL as {"authorize": url}; the test plays the user in the browser and writes the code
// from the redirect to stdin. The client then exchanges it, lists the tools, calls echo, and prints
// {"tools": [...], "echo": text}.
//
// Usage: node oauth-client.mjs SDK_DIR ENDPOINT REDIRECT_URL
import { createInterface } from "node:readline";
import { Provider, sdk } from "./oauth-provider.mjs";

const [sdkDir, endpoint, redirectUrl] = process.argv.slice(2);
const { Client } = await sdk(sdkDir, "client/index.js");
const { StreamableHTTPClientTransport } = await sdk(sdkDir, "client/streamableHttp.js");
const { UnauthorizedError } = await sdk(sdkDir, "client/auth.js");

const provider = new Provider(redirectUrl, "Orrery e2e TypeScript client", ["authorization_code", "refresh_token"]);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const newClient = () => new Client({ name: "orrery-e2e", version: "1.0.0" });

let transport = new StreamableHTTPClientTransport(new URL(endpoint), { authProvider: provider });
try {
  await newClient().connect(transport);
  throw new Error("connected without authorization");
} catch (err) {
  if (!(err instanceof UnauthorizedError)) throw err;
}
console.log(JSON.stringify({ authorize: provider.redirected }));
const { value: code } = await lines.next();
await transport.finishAuth(code.trim());

transport = new StreamableHTTPClientTransport(new URL(endpoint), { authProvider: provider });
const client = newClient();
await client.connect(transport);
const { tools } = await client.listTools();
const echo = tools.find((t) => t.name.endsWith("echo"));
const result = await client.callTool({ name: echo.name, arguments: { message: "hello through OAuth" } });
console.log(JSON.stringify({ tools: tools.map((t) => t.name), echo: result.content?.[0]?.text ?? "" }));
await client.close();
process.exit(0);
