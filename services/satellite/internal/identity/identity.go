// Package identity keeps the satellite's identity: the id and API key the control plane issued when the
// satellite registered. The key is permanent and cannot be shown again, so the file holding it is the
// satellite's most valuable state: it is written atomically and readable by its owner only.
package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// FileName is the identity file's name inside the state directory.
const FileName = "identity.json"

// ErrNotFound means the state directory holds no identity: the satellite has not registered yet.
var ErrNotFound = errors.New("no satellite identity")

// Identity is what the control plane issued at registration.
type Identity struct {
	// SatelliteID identifies the satellite.
	SatelliteID string `json:"satellite_id"`
	// APIKey authenticates every request after registration.
	APIKey string `json:"api_key"`
	// Type is "global" or "team".
	Type string `json:"type"`
	// TeamID is the team a team satellite serves; empty for a global satellite.
	TeamID string `json:"team_id,omitempty"`
}

// LogValue keeps the API key out of logs wherever an Identity is logged whole.
func (id Identity) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("satellite_id", id.SatelliteID),
		slog.String("type", id.Type),
		slog.String("team_id", id.TeamID),
	)
}

// String keeps the API key out of formatted output for the same reason as LogValue.
func (id Identity) String() string {
	return fmt.Sprintf("satellite %s (%s)", id.SatelliteID, id.Type)
}

func (id Identity) validate() error {
	switch {
	case id.SatelliteID == "":
		return errors.New("satellite_id is empty")
	case id.APIKey == "":
		return errors.New("api_key is empty")
	}
	return nil
}

// Store reads and writes the identity file in one state directory.
type Store struct {
	dir string
}

// NewStore returns a Store for the state directory dir. Nothing is touched until Load or Save.
func NewStore(dir string) *Store {
	return &Store{dir: dir}
}

// Dir is the state directory.
func (s *Store) Dir() string { return s.dir }

// Path is the identity file's path.
func (s *Store) Path() string { return filepath.Join(s.dir, FileName) }

// Load reads the identity. It returns ErrNotFound when there is none, and refuses a file that group or
// others can access, since anyone who can read the key can act as this satellite.
func (s *Store) Load() (Identity, error) {
	path := s.Path()
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Identity{}, ErrNotFound
	}
	if err != nil {
		return Identity{}, fmt.Errorf("open identity: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return Identity{}, fmt.Errorf("stat identity: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return Identity{}, fmt.Errorf("identity file %s has mode %#o, so group or others can read or change the API key: "+
			"refusing to use it; run `chmod 600 %s` if the key has not leaked, otherwise revoke the satellite and register again",
			path, perm, path)
	}
	var id Identity
	dec := json.NewDecoder(f)
	if err := dec.Decode(&id); err != nil {
		return Identity{}, fmt.Errorf("decode identity %s: %w", path, err)
	}
	if err := id.validate(); err != nil {
		return Identity{}, fmt.Errorf("identity %s: %w", path, err)
	}
	return id, nil
}

// Save writes the identity, creating the state directory with mode 0700 if needed. The file is written
// to a temporary name and renamed, so a crash leaves either the old identity or the new one, never half of
// one; a lost API key would strand the satellite.
func (s *Store) Save(id Identity) error {
	if err := id.validate(); err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	data, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return fmt.Errorf("encode identity: %w", err)
	}
	data = append(data, '\n')

	// CreateTemp creates the file with mode 0600, so the key is never readable by others, not even briefly.
	tmp, err := os.CreateTemp(s.dir, "."+FileName+".*")
	if err != nil {
		return fmt.Errorf("create identity: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod identity: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write identity: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync identity: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close identity: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.Path()); err != nil {
		return fmt.Errorf("rename identity: %w", err)
	}
	// The rename is durable only once the directory entry is.
	if d, err := os.Open(s.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
