// An MCP client on the official TypeScript SDK that uses a team endpoint in search mode: it lists the
// tools, searches for a task, calls the best match through call_tool with a progress handler, and prints
// one JSON object: {"tools": [...], "found": [...], "progress": n, "result": text}.
//
// Usage: node search-client.mjs SDK_DIR ENDPOINT TOKEN QUERY ARGUMENTS_JSON
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [sdkDir, endpoint, token, query, args] = process.argv.slice(2);
const sdk = (p) => import(pathToFileURL(join(sdkDir, "node_modules/@modelcontextprotocol/sdk/dist/esm", p)).href);
const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");

const client = new Client({ name: "orrery-search-test", version: "1" });
await client.connect(new StreamableHTTPClientTransport(new URL(endpoint), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
}));
const tools = (await client.listTools()).tools.map((t) => t.name);
const search = await client.callTool({ name: "search_tools", arguments: { query, limit: 3 } });
const found = search.structuredContent.tools.map((t) => t.name);
let progress = 0;
const call = await client.callTool(
  { name: "call_tool", arguments: { name: found[0], arguments: JSON.parse(args) } },
  undefined,
  { onprogress: () => { progress++; } },
);
console.log(JSON.stringify({ tools, found, progress, result: call.content.map((c) => c.text).join("\n") }));
await client.close();
