package mcpruntime

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// An instance's catalogue is kept on disk (Config.CatalogDir) each time discovery changes it, so that after
// a restart of the satellite the team endpoint lists the instance's tools, resources and prompts while the
// server starts again, and a call waits for the start instead of finding no such tool. A kept catalogue
// is used only by the instance it was discovered for and only with the configuration (content hash) it was
// discovered under; the server's first discovery replaces it.

// maxKeptCatalogBytes bounds a kept catalogue file. A server may list what it likes, but what does not fit
// is discovered again rather than read.
const maxKeptCatalogBytes = 8 << 20

// keptCatalog is a catalogue as kept on disk.
type keptCatalog struct {
	InstanceID  string                  `json:"instance_id"`
	ContentHash string                  `json:"content_hash"`
	Initialize  *mcp.InitializeResult   `json:"initialize,omitempty"`
	Tools       []*mcp.Tool             `json:"tools,omitempty"`
	Resources   []*mcp.Resource         `json:"resources,omitempty"`
	Templates   []*mcp.ResourceTemplate `json:"resource_templates,omitempty"`
	Prompts     []*mcp.Prompt           `json:"prompts,omitempty"`
}

// keptPath is where instance id's catalogue is kept, or "" when catalogues are not kept. The name is a hash
// of the id: ids are long and carry slugs, and two must never share a file.
func (r *Runtime) keptPath(id string) string {
	if r.cfg.CatalogDir == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(r.cfg.CatalogDir, hex.EncodeToString(sum[:16])+".json")
}

// loadKept returns the catalogue kept for the instance under its current configuration, if there is one.
func (in *instance) loadKept() (catalog, bool) {
	k, ok := in.rt.readKept(in.id)
	if !ok || k.ContentHash != in.currentSpec().GetContentHash() {
		return catalog{}, false
	}
	return catalog{init: k.Initialize, tools: k.Tools, resources: k.Resources, templates: k.Templates, prompts: k.Prompts}, true
}

// keptTools are the tools kept for instance id under any configuration: what a held instance knew of its
// server's tools when it last ran.
func (r *Runtime) keptTools(id string) []*mcp.Tool {
	k, _ := r.readKept(id)
	return k.Tools
}

// readKept returns the catalogue kept for instance id, if there is one.
func (r *Runtime) readKept(id string) (keptCatalog, bool) {
	path := r.keptPath(id)
	if path == "" {
		return keptCatalog{}, false
	}
	log := r.logger.With(slog.String("instance_id", id))
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return keptCatalog{}, false
	}
	if err != nil {
		log.Warn("cannot read the kept catalogue", slog.Any("error", err))
		return keptCatalog{}, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeptCatalogBytes+1))
	if err != nil || len(b) > maxKeptCatalogBytes {
		log.Warn("kept catalogue unreadable or too large; discovering afresh", slog.Any("error", err))
		return keptCatalog{}, false
	}
	var k keptCatalog
	if err := json.Unmarshal(b, &k); err != nil {
		log.Warn("kept catalogue unreadable; discovering afresh", slog.Any("error", err))
		return keptCatalog{}, false
	}
	if k.InstanceID != id {
		return keptCatalog{}, false
	}
	return k, true
}

// saveKept writes the instance's current catalogue to disk, replacing the file at once so that a crash
// leaves the old catalogue or the new one. Failing to keep it costs only the head start after a restart.
func (in *instance) saveKept() {
	path := in.rt.keptPath(in.id)
	if path == "" {
		return
	}
	in.keptMu.Lock()
	defer in.keptMu.Unlock()
	in.mu.Lock()
	cat, hash := in.cat, in.spec.GetContentHash()
	in.mu.Unlock()
	b, err := json.Marshal(keptCatalog{InstanceID: in.id, ContentHash: hash, Initialize: cat.init, Tools: cat.tools,
		Resources: cat.resources, Templates: cat.templates, Prompts: cat.prompts})
	if err == nil && len(b) > maxKeptCatalogBytes {
		err = fmt.Errorf("catalogue of %d bytes is over %d", len(b), maxKeptCatalogBytes)
	}
	if err == nil {
		err = writeFileAtomic(path, b)
	}
	if err != nil {
		in.log().Warn("cannot keep the catalogue for the next start", slog.Any("error", err))
		in.removeKept()
	}
}

// removeKept deletes the instance's kept catalogue.
func (in *instance) removeKept() {
	if path := in.rt.keptPath(in.id); path != "" {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			in.log().Warn("cannot remove the kept catalogue", slog.Any("error", err))
		}
	}
}

// writeFileAtomic writes data to path through a temporary file in the same directory and a rename.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".catalog-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync() // or a crash could leave the renamed file empty
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}
