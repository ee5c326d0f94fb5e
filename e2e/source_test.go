package e2e_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestServerBuiltFromAnUploadedArchive runs a server from an archive its team uploaded to the control
// plane: the satellite fetches it over its authenticated channel, checks its checksum, unpacks it into its
// state directory, builds it and runs the template's command in the tree, and the team's endpoint calls its
// tool. Under bubblewrap the build writes the tree at /app, and the server then reads it there.
func TestServerBuiltFromAnUploadedArchive(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"direct", nil},
		{"bwrap", []string{"ORRERY_SANDBOX=bwrap", "ORRERY_DEV=false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.name == "bwrap" {
				for _, program := range []string{"bwrap", "slirp4netns", "/usr/sbin/nft"} {
					if _, err := exec.LookPath(program); err != nil {
						t.Skipf("%s not found: TestSandboxedServerEverything installs what sandboxes need", program)
					}
				}
			}
			archive := fixtureArchive(t, "../services/satellite/internal/build/testdata/python-server/fixture_server",
				"fixture_server", map[string]string{"VERSION": "uploaded-1"})
			sum := sha256.Sum256(archive)
			digest := hex.EncodeToString(sum[:])
			// The build rewrites VERSION: what the server answers proves it ran in the built tree.
			source := `{"uploaded": true, "sha256": "` + digest + `", "buildCommand": "echo built-$(id -u) > VERSION"}`
			begin := time.Now()
			te := serveTeamEndpointFrom(t, startControlPlane(t), tc.env, "builders", "srcpy", "python3",
				[]string{"-m", "fixture_server"}, false, "srcpy__version", source,
				func(te *teamEndpoint) {
					if _, err := te.conn.Exec(t.Context(), `insert into source_archives (team_id, sha256, content, size)
						values ($1, $2, $3, $4)`, te.id, digest, archive, len(archive)); err != nil {
						t.Fatal(err)
					}
				})
			t.Logf("online from the uploaded archive %v after the control plane started", time.Since(begin).Round(time.Millisecond))

			session, err := connectMCP(t.Context(), te.endpoint, te.token)
			if err != nil {
				t.Fatal(err)
			}
			defer session.Close()
			res, err := session.CallTool(t.Context(), &mcp.CallToolParams{Name: "srcpy__version", Arguments: map[string]any{}})
			if err != nil {
				t.Fatal(err)
			}
			if text := res.Content[0].(*mcp.TextContent).Text; res.IsError || !strings.HasPrefix(text, "built-") {
				t.Fatalf("version answered %q (error %v), want what the build wrote", text, res.IsError)
			} else {
				t.Logf("the server answers %q: the build ran as uid %s", text, strings.TrimPrefix(text, "built-"))
			}
			builds, _ := os.ReadDir(filepath.Join(te.sat.StateDir, "builds"))
			if len(builds) != 1 {
				t.Errorf("builds in the satellite's state: %v, want the one", builds)
			}
		})
	}
}

// fixtureArchive packs the files of dir, under under, and extra as a tar.gz with one top-level directory.
func fixtureArchive(t *testing.T, dir, under string, extra map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	add := func(name string, body []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: "src/" + name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(body)
	}
	err := filepath.WalkDir(dir, func(file string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(file, "__pycache__") {
			return err
		}
		rel, _ := filepath.Rel(dir, file)
		body, err := os.ReadFile(file)
		add(under+"/"+filepath.ToSlash(rel), body)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range extra {
		add(name, []byte(body))
	}
	_ = tw.Close()
	_ = zw.Close()
	return buf.Bytes()
}
