"""An MCP server over stdio with one tool, version, written with the standard library only."""

import json
import os
import sys

# The version the archive carries in VERSION, in the working directory, if it does.
VERSION = open("VERSION").read().strip() if os.path.exists("VERSION") else "python-1"


def reply(msg_id, result=None, error=None):
    msg = {"jsonrpc": "2.0", "id": msg_id}
    if error is not None:
        msg["error"] = error
    else:
        msg["result"] = result
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def handle(req):
    method = req.get("method")
    if "id" not in req:
        return  # a notification
    if method == "initialize":
        reply(req["id"], {
            "protocolVersion": req.get("params", {}).get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "fixture-python", "version": "1.0.0"},
        })
    elif method == "ping":
        reply(req["id"], {})
    elif method == "tools/list":
        reply(req["id"], {"tools": [{
            "name": "version",
            "description": "Says which version of the server answers.",
            "inputSchema": {"type": "object", "properties": {}},
        }]})
    elif method == "tools/call":
        reply(req["id"], {"content": [{"type": "text", "text": VERSION}]})
    else:
        reply(req["id"], error={"code": -32601, "message": "method not found"})


def main():
    for line in sys.stdin:
        line = line.strip()
        if line:
            handle(json.loads(line))


if __name__ == "__main__":
    main()
