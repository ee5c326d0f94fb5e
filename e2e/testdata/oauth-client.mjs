// An MCP client built on the official TypeScript SDK's OAuth support, started cold: it knows only the
// endpoint URL. It discovers the authorization server from the endpoint's 401, registers, and prints the
// authorization URL as {"authorize": url}; the test plays the user in the browser and writes the code
// from the redirect to stdin. The client then exchanges it, lists the tools, calls echo, and prints
// {"tools": [...], "echo": text}.
//
// Usage: node oauth-client.mjs SDK_DIR ENDPOINT REDIRECT_URL
import { createInterface } from "node:readline";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [sdkDir, endpoint, redirectUrl] = process.argv.slice(2);
const sdk = (p) => import(pathToFileURL(join(sdkDir, "node_modules/@modelcontextprotocol/sdk/dist/esm", p)).href);
const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");
const { UnauthorizedError } = await sdk("client/auth.js");

// The provider keeps everything in memory, as a fresh client would.
class Provider {
  saved = {};
  get redirectUrl() { return redirectUrl; }
  get clientMetadata() {
    return {
      client_name: "Orrery e2e TypeScript client",
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  clientInformation() { return this.saved.client; }
  saveClientInformation(info) { this.saved.client = info; }
  tokens() { return this.saved.tokens; }
  saveTokens(tokens) { this.saved.tokens = tokens; }
  saveCodeVerifier(v) { this.saved.verifier = v; }
  codeVerifier() { return this.saved.verifier; }
  redirectToAuthorization(url) { console.log(JSON.stringify({ authorize: url.href })); }
}

const provider = new Provider();
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const newClient = () => new Client({ name: "orrery-e2e", version: "1.0.0" });

let transport = new StreamableHTTPClientTransport(new URL(endpoint), { authProvider: provider });
try {
  await newClient().connect(transport);
  throw new Error("connected without authorization");
} catch (err) {
  if (!(err instanceof UnauthorizedError)) throw err;
}
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
