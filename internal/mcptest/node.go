package mcptest

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/orrery/orrery/internal/nodejs"
)

// Pinned versions of the npm packages behind Node22, Inspector and Conformance.
const (
	// Node22Version is the version of the Node.js binary the clients below run on: they need Node >= 22,
	// while the machine's own node may be older.
	Node22Version = nodejs.Node22Version
	// InspectorVersion is the version of @modelcontextprotocol/inspector. Its CLI sends custom headers
	// (--header) from 0.17 on; 0.15.0, the newest that declares Node 20 support, cannot send a bearer token.
	InspectorVersion = "1.0.3"
	// ConformanceVersion is the version of @modelcontextprotocol/conformance.
	ConformanceVersion = "0.1.16"
	// ConformancePreviewVersion is the newest pre-release of the suite, which has scenarios for the
	// stateless 2026-07-28 protocol era.
	ConformancePreviewVersion = "0.2.0-alpha.12"
	// TypeScriptSDKVersion is the version of @modelcontextprotocol/sdk, the official TypeScript SDK, whose
	// OAuth client tests drive against team endpoints.
	TypeScriptSDKVersion = "1.32.2"
)

const (
	inspectorPackage   = "@modelcontextprotocol/inspector"
	conformancePackage = "@modelcontextprotocol/conformance"
	// The CLI proper; the package's mcp-inspector bin only launches it (or the web UI) in a child node.
	inspectorEntry   = "node_modules/@modelcontextprotocol/inspector/cli/build/index.js"
	conformanceEntry = "node_modules/@modelcontextprotocol/conformance/dist/index.js"
)

var packages struct {
	sync.Mutex
	done map[string]error // install directory → result, once per test process
}

// Node22 returns the path of a Node.js 22 binary, installed from npm on first use.
func Node22(t testing.TB) string {
	t.Helper()
	node, err := nodejs.Node22(t.Context())
	if err != nil {
		t.Fatalf("mcptest: %v", err)
	}
	return node
}

// Inspector returns a command line that runs the MCP Inspector's CLI mode with Node22; append the CLI's own
// arguments (target URL, --method, --header ...).
func Inspector(t testing.TB) (command string, args []string) {
	t.Helper()
	node := Node22(t)
	dir := ensurePackages(t, "inspector-"+InspectorVersion, inspectorPackage+"@"+InspectorVersion)
	return node, []string{filepath.Join(dir, inspectorEntry)}
}

// Conformance returns a command line that runs the official MCP conformance suite, at ConformanceVersion,
// with Node22; append a subcommand and its arguments (server --url ...).
func Conformance(t testing.TB) (command string, args []string) {
	t.Helper()
	return ConformanceAt(t, ConformanceVersion)
}

// ConformanceAt is Conformance at another version of the suite, such as ConformancePreviewVersion.
func ConformanceAt(t testing.TB, version string) (command string, args []string) {
	t.Helper()
	node := Node22(t)
	dir := ensurePackages(t, "conformance-"+version, conformancePackage+"@"+version)
	return node, []string{filepath.Join(dir, conformanceEntry)}
}

// TypeScriptSDK returns Node22 and the directory whose node_modules holds the official TypeScript SDK,
// for a script that imports it by path.
func TypeScriptSDK(t testing.TB) (node, dir string) {
	t.Helper()
	node = Node22(t)
	dir = ensurePackages(t, "typescript-sdk-"+TypeScriptSDKVersion, "@modelcontextprotocol/sdk@"+TypeScriptSDKVersion)
	return node, dir
}

// ensurePackages installs specs with npm into the cache directory named name, once per machine, and
// returns that directory. It shares Everything's cache, lock and completion marker conventions.
func ensurePackages(t testing.TB, name string, specs ...string) string {
	t.Helper()
	dir := nodejs.CacheDir(name)
	packages.Lock()
	defer packages.Unlock()
	if packages.done == nil {
		packages.done = map[string]error{}
	}
	err, ok := packages.done[dir]
	if !ok {
		err = nodejs.Install(context.Background(), dir, specs...)
		packages.done[dir] = err
	}
	if err != nil {
		t.Fatalf("mcptest: %v", err)
	}
	return dir
}
