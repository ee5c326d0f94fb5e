// An MCP server over stdio with one tool, version, that answers with the version it was built as.
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";

const version = "__VERSION__";
const server = new McpServer({ name: "fixture-node", version: "1.0.0" });
server.tool("version", "Says which version of the server answers.", async () => ({
  content: [{ type: "text", text: version }],
}));
await server.connect(new StdioServerTransport());
