package build

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orrery/orrery/internal/egress"
)

// entry is one member of a test archive.
type member struct {
	name, body, link string
	kind             byte // tar type flag; 0 is a regular file
	mode             int64
}

func tarGz(t *testing.T, members ...member) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, m := range members {
		h := &tar.Header{Name: m.name, Typeflag: m.kind, Linkname: m.link, Mode: m.mode, ModTime: time.Unix(0, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(m.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(m.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zipOf(t *testing.T, members ...member) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, m := range members {
		h := &zip.FileHeader{Name: m.name, Method: zip.Deflate}
		switch m.kind {
		case tar.TypeSymlink:
			h.SetMode(fs.ModeSymlink | 0o777)
			m.body = m.link
		case tar.TypeDir:
			h.SetMode(fs.ModeDir | 0o755)
		default:
			h.SetMode(0o644)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(m.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// dirArchive packs a fixture directory as a tar.gz under one top-level directory, as GitHub's archives
// are, with extra files added or replaced.
func dirArchive(t *testing.T, dir string, extra map[string]string) []byte {
	t.Helper()
	var members []member
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if _, ok := extra[rel]; ok {
			return nil
		}
		body, err := os.ReadFile(path)
		members = append(members, member{name: "fixture-0123abc/" + filepath.ToSlash(rel), body: string(body)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range extra {
		members = append(members, member{name: "fixture-0123abc/" + name, body: body})
	}
	return tarGz(t, members...)
}

// archiveServer serves archives by path over TLS on loopback.
type archiveServer struct {
	*httptest.Server
	mu    sync.Mutex
	files map[string][]byte
	gets  int
}

func newArchiveServer(t *testing.T) *archiveServer {
	t.Helper()
	s := &archiveServer{files: map[string][]byte{}}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		body, ok := s.files[r.URL.Path]
		s.gets++
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

// put serves body at path and returns its URL and SHA-256.
func (s *archiveServer) put(path string, body []byte) (url, sum string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[path] = body
	return s.URL + path, sha256Hex(body)
}

// client is an HTTP client that trusts the server and dials under an egress policy that allows
// loopback, as ORRERY_SANDBOX_EGRESS_ALLOW=127.0.0.0/8 would.
func (s *archiveServer) client() *http.Client {
	tr := egress.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}.Transport()
	tr.TLSClientConfig = s.Client().Transport.(*http.Transport).TLSClientConfig.Clone() // each transport adds to its NextProtos
	return &http.Client{Transport: tr}
}

func TestUnpackRefusesUnsafeArchives(t *testing.T) {
	t.Parallel()
	bomb := strings.Repeat("\x00", 4<<20) // 4 MiB of zeros compress to a few KiB
	many := make([]member, 0, 101)
	for i := range 101 {
		many = append(many, member{name: "f" + strings.Repeat("x", i), body: "x"})
	}
	for _, tc := range []struct {
		name    string
		archive func(t *testing.T) []byte
		want    string
	}{
		{"tar path traversal", func(t *testing.T) []byte { return tarGz(t, member{name: "pkg/../../evil", body: "x"}) }, "leaves the tree"},
		{"tar absolute path", func(t *testing.T) []byte { return tarGz(t, member{name: "/etc/evil", body: "x"}) }, "absolute path"},
		{"tar symlink escape", func(t *testing.T) []byte {
			return tarGz(t, member{name: "pkg/etc", kind: tar.TypeSymlink, link: "../../../etc"})
		}, "points out of the tree"},
		{"tar absolute symlink", func(t *testing.T) []byte {
			return tarGz(t, member{name: "pkg/passwd", kind: tar.TypeSymlink, link: "/etc/passwd"})
		}, "points out of the tree"},
		{"tar symlink chain escape", func(t *testing.T) []byte {
			// Each looks harmless: a/up points at the tree's root, a/out at a/up's parent.
			return tarGz(t,
				member{name: "a/", kind: tar.TypeDir, mode: 0o755},
				member{name: "a/up", kind: tar.TypeSymlink, link: ".."},
				member{name: "a/out", kind: tar.TypeSymlink, link: "up/.."})
		}, "points out of the tree"},
		{"tar write through a symlink", func(t *testing.T) []byte {
			return tarGz(t,
				member{name: "here", kind: tar.TypeSymlink, link: "."},
				member{name: "here/../escaped", body: "x"})
		}, "leaves the tree"},
		{"tar hard link out", func(t *testing.T) []byte {
			return tarGz(t, member{name: "pkg/shadow", kind: tar.TypeLink, link: "../../etc/shadow"})
		}, "points out of the tree"},
		{"tar device file", func(t *testing.T) []byte {
			return tarGz(t, member{name: "pkg/sda", kind: tar.TypeBlock})
		}, "device"},
		{"tar fifo", func(t *testing.T) []byte { return tarGz(t, member{name: "pkg/fifo", kind: tar.TypeFifo}) }, "device"},
		{"tar bomb", func(t *testing.T) []byte { return tarGz(t, member{name: "zeros", body: bomb}) }, "bytes unpacked"},
		{"tar too many files", func(t *testing.T) []byte { return tarGz(t, many...) }, "more than 100 entries"},
		{"zip path traversal", func(t *testing.T) []byte { return zipOf(t, member{name: "../evil", body: "x"}) }, "leaves the tree"},
		{"zip symlink escape", func(t *testing.T) []byte {
			return zipOf(t, member{name: "etc", kind: tar.TypeSymlink, link: "../etc"})
		}, "points out of the tree"},
		{"zip bomb", func(t *testing.T) []byte { return zipOf(t, member{name: "zeros", body: bomb}) }, "bytes unpacked"},
		{"zip too many files", func(t *testing.T) []byte { return zipOf(t, many...) }, "more than 100 entries"},
		{"not an archive", func(t *testing.T) []byte { return []byte("#!/bin/sh\necho hello\n") }, "not a tar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			tree := filepath.Join(dir, "tree")
			if err := os.Mkdir(tree, 0o755); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, "archive")
			if err := os.WriteFile(file, tc.archive(t), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			err = unpack(f, tree, Limits{Files: 100, Bytes: 1 << 20})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("unpack: got %v, want an error saying %q", err, tc.want)
			}
			// Nothing landed beside the tree.
			list, _ := os.ReadDir(dir)
			if len(list) != 2 {
				t.Errorf("unpacking wrote outside the tree: %v", list)
			}
		})
	}
}

func TestUnpackKeepsSafeLinks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	_ = os.Mkdir(tree, 0o755)
	file := filepath.Join(dir, "archive")
	_ = os.WriteFile(file, tarGz(t,
		member{name: "pkg/bin/run", body: "#!/bin/sh\n", mode: 0o755},
		member{name: "pkg/lib/index.js", body: "x"},
		member{name: "pkg/node_modules/.bin/run", kind: tar.TypeSymlink, link: "../../bin/run"},
		member{name: "pkg/index.js", kind: tar.TypeLink, link: "pkg/lib/index.js"},
	), 0o600)
	f, _ := os.Open(file)
	defer f.Close()
	if err := unpack(f, tree, Limits{Files: 100, Bytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(tree, "pkg/node_modules/.bin/run"))
	if err != nil || info.Mode().Perm()&0o111 == 0 {
		t.Fatalf("the link in the tree: %v, %v", info, err)
	}
	if b, err := os.ReadFile(filepath.Join(tree, "pkg/index.js")); err != nil || string(b) != "x" {
		t.Fatalf("the hard link: %q, %v", b, err)
	}
}
