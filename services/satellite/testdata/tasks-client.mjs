// An MCP client on the official TypeScript SDK that runs a task through a team endpoint: a task-augmented
// call of TOOL streamed to its result (task created, polled with tasks/get, result from tasks/result),
// tasks/list, and a second task cancelled. Strict capabilities make it check the endpoint's declared
// tasks capability before each of these. It prints one JSON object:
// {"capability", "taskId", "statuses": [...], "result", "listed": [...], "cancelledId", "cancelledStatus"}.
//
// Usage: node tasks-client.mjs SDK_DIR ENDPOINT TOKEN TOOL ARGUMENTS_JSON
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [sdkDir, endpoint, token, tool, args] = process.argv.slice(2);
const sdk = (p) => import(pathToFileURL(join(sdkDir, "node_modules/@modelcontextprotocol/sdk/dist/esm", p)).href);
const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");
const { CallToolResultSchema, CreateTaskResultSchema } = await sdk("types.js");

const client = new Client({ name: "orrery-tasks-test", version: "1" }, { enforceStrictCapabilities: true });
await client.connect(new StreamableHTTPClientTransport(new URL(endpoint), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
}));

const out = { capability: client.getServerCapabilities().tasks, statuses: [] };
const stream = client.experimental.tasks.callToolStream(
  { name: tool, arguments: JSON.parse(args) }, CallToolResultSchema, { task: { ttl: 60000 } });
for await (const message of stream) {
  switch (message.type) {
    case "taskCreated": out.taskId = message.task.taskId; break;
    case "taskStatus": out.statuses.push(message.task.status); break;
    case "result": out.result = message.result.content.map((c) => c.text).join("\n"); break;
    case "error": throw message.error;
  }
}
out.listed = (await client.experimental.tasks.listTasks()).tasks.map((t) => t.taskId);

const second = await client.request(
  { method: "tools/call", params: { name: tool, arguments: JSON.parse(args), task: { ttl: 60000 } } },
  CreateTaskResultSchema);
out.cancelledId = second.task.taskId;
await client.experimental.tasks.cancelTask(out.cancelledId);
out.cancelledStatus = (await client.experimental.tasks.getTask(out.cancelledId)).status;

console.log(JSON.stringify(out));
await client.close();
