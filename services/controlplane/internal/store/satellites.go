package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// Registration token errors say why a token cannot register a satellite.
var (
	ErrTokenConsumed = errors.New("registration token was already used")
	ErrTokenRevoked  = errors.New("registration token was revoked")
	ErrTokenExpired  = errors.New("registration token has expired")
)

// Scope is whom a satellite, or the token that registers it, serves: "global" or "team".
type Scope string

// Scopes.
const (
	ScopeGlobal Scope = "global"
	ScopeTeam   Scope = "team"
)

// SatelliteStatus is a satellite's status as shown to administrators.
type SatelliteStatus string

// Satellite statuses. Offline is derived from the last heartbeat, never stored, so every replica agrees.
const (
	SatelliteInactive SatelliteStatus = "inactive"
	SatelliteActive   SatelliteStatus = "active"
	SatelliteOffline  SatelliteStatus = "offline"
	SatelliteRevoked  SatelliteStatus = "revoked"
)

// Satellite is a registered satellite.
type Satellite struct {
	ID              uuid.UUID
	Name            string
	Type            Scope
	TeamID          *uuid.UUID
	APIKeyID        string
	APIKeyHash      string
	ActivatedAt     *time.Time
	RevokedAt       *time.Time
	LastHeartbeatAt *time.Time
	URL             string
	Version         string
	SystemMetrics   json.RawMessage
	ProcessCount    int
	CreatedAt       time.Time
	// Capacity is the satellite's reported weight in placement; zero means the default.
	Capacity int
	// InternalURL is where the satellites of its pool reach it.
	InternalURL string
	// OpenSessions is how many MCP sessions it last reported open.
	OpenSessions int
	// DrainingAt is when an operator started draining it; DrainedAt when it finished.
	DrainingAt, DrainedAt *time.Time
}

// Status returns the satellite's status at now, counting it offline when no heartbeat arrived within
// offlineAfter.
func (s Satellite) Status(now time.Time, offlineAfter time.Duration) SatelliteStatus {
	switch {
	case s.RevokedAt != nil:
		return SatelliteRevoked
	case s.ActivatedAt == nil:
		return SatelliteInactive
	case s.LastHeartbeatAt == nil || now.Sub(*s.LastHeartbeatAt) > offlineAfter:
		return SatelliteOffline
	default:
		return SatelliteActive
	}
}

// Serves reports whether the satellite serves teamID.
func (s Satellite) Serves(teamID uuid.UUID) bool {
	return s.Type == ScopeGlobal || (s.TeamID != nil && *s.TeamID == teamID)
}

func satelliteFromRow(r dbsqlc.Satellite) Satellite {
	return Satellite{
		ID: r.ID, Name: r.Name, Type: Scope(r.Type), TeamID: r.TeamID, APIKeyID: r.ApiKeyID, APIKeyHash: r.ApiKeyHash,
		ActivatedAt: r.ActivatedAt, RevokedAt: r.RevokedAt, LastHeartbeatAt: r.LastHeartbeatAt, URL: r.Url,
		Version: r.Version, SystemMetrics: r.SystemMetrics, ProcessCount: int(r.ProcessCount), CreatedAt: r.CreatedAt,
		Capacity: int(r.Capacity), InternalURL: r.InternalUrl, OpenSessions: int(r.OpenSessions),
		DrainingAt: r.DrainingAt, DrainedAt: r.DrainedAt,
	}
}

// NewSatellite describes a satellite to register.
type NewSatellite struct {
	Name     string
	Version  string
	APIKeyID string
	// HashAPIKey returns the stored hash of the satellite's API key. It runs after the token is consumed,
	// so of registrations racing with one token only the one that wins pays for the hash.
	HashAPIKey func(context.Context) (string, error)
}

// RegisterSatellite consumes registration token tokenID and creates the satellite it grants, in one
// transaction: of two registrations racing with one token, exactly one succeeds, and a failed registration
// leaves the token usable.
func (s *Store) RegisterSatellite(ctx context.Context, tokenID uuid.UUID, ns NewSatellite) (Satellite, error) {
	var sat Satellite
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		tok, err := q.ConsumeRegistrationToken(ctx, tokenID)
		if err != nil {
			return unusableTokenReason(ctx, q, tokenID, err)
		}
		hash, err := ns.HashAPIKey(ctx)
		if err != nil {
			return err
		}
		row, err := q.CreateSatellite(ctx, dbsqlc.CreateSatelliteParams{
			Name: ns.Name, Type: tok.Scope, TeamID: tok.TeamID, ApiKeyID: ns.APIKeyID, ApiKeyHash: hash,
			Version: ns.Version, RegistrationTokenID: &tok.ID,
		})
		if err != nil {
			return translate(err, "create satellite")
		}
		if err := q.SetRegistrationTokenSatellite(ctx, &row.ID, tok.ID); err != nil {
			return translate(err, "link registration token")
		}
		sat = satelliteFromRow(row)
		return nil
	})
	return sat, err
}

// unusableTokenReason explains why consuming a token matched no row.
func unusableTokenReason(ctx context.Context, q *dbsqlc.Queries, tokenID uuid.UUID, consumeErr error) error {
	if err := translate(consumeErr, "consume registration token"); !errors.Is(err, ErrNotFound) {
		return err
	}
	tok, err := q.GetRegistrationToken(ctx, tokenID)
	if err != nil {
		return translate(err, "get registration token")
	}
	switch {
	case tok.RevokedAt != nil:
		return ErrTokenRevoked
	case tok.ConsumedAt != nil:
		return ErrTokenConsumed
	default:
		return ErrTokenExpired
	}
}

// SatelliteByKeyID returns the satellite whose API key has public id keyID.
func (s *Store) SatelliteByKeyID(ctx context.Context, keyID string) (Satellite, error) {
	row, err := s.q.GetSatelliteByKeyID(ctx, keyID)
	if err != nil {
		return Satellite{}, translate(err, "get satellite by key")
	}
	return satelliteFromRow(row), nil
}

// Satellite returns one satellite.
func (s *Store) Satellite(ctx context.Context, id uuid.UUID) (Satellite, error) {
	row, err := s.q.GetSatellite(ctx, id)
	if err != nil {
		return Satellite{}, translate(err, "get satellite")
	}
	return satelliteFromRow(row), nil
}

// Cursor marks a position in a list ordered by creation time and id.
type Cursor struct {
	CreatedAt time.Time
	ID        uuid.UUID
}

func cursorArgs(c *Cursor) (*time.Time, *uuid.UUID) {
	if c == nil {
		return nil, nil
	}
	return &c.CreatedAt, &c.ID
}

// ListSatellites returns up to limit satellites after cursor, oldest first: one team's, or all when teamID is nil.
func (s *Store) ListSatellites(ctx context.Context, teamID *uuid.UUID, after *Cursor, limit int) ([]Satellite, error) {
	at, id := cursorArgs(after)
	rows, err := s.q.ListSatellites(ctx, teamID, at, id, int32(limit))
	if err != nil {
		return nil, translate(err, "list satellites")
	}
	sats := make([]Satellite, len(rows))
	for i, r := range rows {
		sats[i] = satelliteFromRow(r)
	}
	return sats, nil
}

// RevokeSatellite revokes a satellite's API key; with teamID, only a satellite of that team. Every request re-reads the key's row, so the revocation holds
// at once on every replica; the notification also wakes the satellite's open long poll, which then ends with
// the refusal instead of running its course.
func (s *Store) RevokeSatellite(ctx context.Context, id uuid.UUID, teamID *uuid.UUID) (Satellite, error) {
	var sat Satellite
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		row, err := q.RevokeSatellite(ctx, id, teamID)
		if err != nil {
			return translate(err, "revoke satellite")
		}
		sat = satelliteFromRow(row)
		return translate(q.NotifyCommand(ctx, CommandChannel, id.String()), "notify revocation")
	})
	return sat, err
}

// Heartbeat is what a satellite reports about itself.
type Heartbeat struct {
	URL           string
	Version       string
	SystemMetrics json.RawMessage
	ProcessCounts json.RawMessage
	Processes     []Process
	// Capacity, InternalURL and OpenSessions are what a global satellite reports for placement and its pool.
	Capacity     int
	InternalURL  string
	OpenSessions int
}

// Process is one instance's process as a satellite reported it.
type Process struct {
	InstanceID     string
	TeamID         uuid.UUID
	InstallationID uuid.UUID
	Status         string
	Health         string
	PID            int32
	MemoryBytes    int64
	UptimeSeconds  float64
	RequestCount   int64
}

// RecordHeartbeat stores a heartbeat, activating a new satellite, and replaces the satellite's process list.
// It stores nothing and returns ErrNotFound unless the satellite is live and still has the API key whose hash
// is apiKeyHash, so callers may skip a separate key check.
func (s *Store) RecordHeartbeat(ctx context.Context, satelliteID uuid.UUID, apiKeyHash string, hb Heartbeat) (Satellite, error) {
	// A nil slice would be NULL, and "not (x = any(NULL))" would keep every stale process.
	keep := make([]string, len(hb.Processes))
	for i, p := range hb.Processes {
		keep[i] = p.InstanceID
	}
	params := dbsqlc.RecordHeartbeatParams{
		ID: satelliteID, ApiKeyHash: apiKeyHash, Url: hb.URL, Version: hb.Version, SystemMetrics: hb.SystemMetrics,
		ProcessCount: int32(len(hb.Processes)), ProcessCounts: hb.ProcessCounts, KeepInstanceIds: keep,
		Capacity: int32(hb.Capacity), InternalUrl: hb.InternalURL, OpenSessions: int32(hb.OpenSessions),
	}
	if len(hb.Processes) == 0 {
		row, err := s.q.RecordHeartbeat(ctx, params)
		if err != nil {
			return Satellite{}, translate(err, "record heartbeat")
		}
		return satelliteFromRow(dbsqlc.Satellite(row)), nil
	}
	var sat Satellite
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		row, err := q.RecordHeartbeat(ctx, params)
		if err != nil {
			return translate(err, "record heartbeat")
		}
		sat = satelliteFromRow(dbsqlc.Satellite(row))
		var procs dbsqlc.UpsertSatelliteProcessesParams
		addProcesses(&procs, satelliteID, hb.Processes)
		return upsertProcesses(ctx, q, procs)
	})
	return sat, err
}

// HeldHeartbeat is a heartbeat a replica held back to store with others (RecordHeartbeats).
type HeldHeartbeat struct {
	SatelliteID uuid.UUID
	APIKeyHash  string
	ReceivedAt  time.Time
	Heartbeat
}

// RecordHeartbeats stores held heartbeats in one transaction of two statements, each as RecordHeartbeat
// would store the heartbeat of an active satellite that leaves its URL, version, capacity and internal URL
// as they are; a satellite's last heard time never goes back. It returns the satellites it stored: one
// missing was revoked, or its key replaced, after its heartbeat was taken.
func (s *Store) RecordHeartbeats(ctx context.Context, beats []HeldHeartbeat) ([]uuid.UUID, error) {
	var p dbsqlc.RecordHeartbeatBatchParams
	for _, b := range beats {
		p.Ids = append(p.Ids, b.SatelliteID)
		p.ApiKeyHashes = append(p.ApiKeyHashes, b.APIKeyHash)
		p.ReceivedAt = append(p.ReceivedAt, b.ReceivedAt)
		p.SystemMetrics = append(p.SystemMetrics, b.SystemMetrics)
		p.ProcessCount = append(p.ProcessCount, int32(len(b.Processes)))
		p.ProcessCounts = append(p.ProcessCounts, b.ProcessCounts)
		p.OpenSessions = append(p.OpenSessions, int32(b.OpenSessions))
		for _, pr := range b.Processes {
			p.ProcessSatelliteIds = append(p.ProcessSatelliteIds, b.SatelliteID)
			p.InstanceIds = append(p.InstanceIds, pr.InstanceID)
		}
	}
	var stored []uuid.UUID
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		var err error
		if stored, err = q.RecordHeartbeatBatch(ctx, p); err != nil {
			return translate(err, "record heartbeats")
		}
		if len(p.ProcessSatelliteIds) == 0 {
			return nil
		}
		live := make(map[uuid.UUID]bool, len(stored))
		for _, id := range stored {
			live[id] = true
		}
		var procs dbsqlc.UpsertSatelliteProcessesParams
		for _, b := range beats {
			if live[b.SatelliteID] {
				addProcesses(&procs, b.SatelliteID, b.Processes)
			}
		}
		return upsertProcesses(ctx, q, procs)
	})
	return stored, err
}

func addProcesses(p *dbsqlc.UpsertSatelliteProcessesParams, satelliteID uuid.UUID, procs []Process) {
	for _, pr := range procs {
		p.SatelliteIds = append(p.SatelliteIds, satelliteID)
		p.InstanceIds = append(p.InstanceIds, pr.InstanceID)
		p.TeamIds = append(p.TeamIds, pr.TeamID)
		p.InstallationIds = append(p.InstallationIds, pr.InstallationID)
		p.Statuses = append(p.Statuses, pr.Status)
		p.Healths = append(p.Healths, pr.Health)
		p.Pids = append(p.Pids, pr.PID)
		p.MemoryBytes = append(p.MemoryBytes, pr.MemoryBytes)
		p.UptimeSeconds = append(p.UptimeSeconds, pr.UptimeSeconds)
		p.RequestCounts = append(p.RequestCounts, pr.RequestCount)
	}
}

func upsertProcesses(ctx context.Context, q *dbsqlc.Queries, p dbsqlc.UpsertSatelliteProcessesParams) error {
	if len(p.SatelliteIds) == 0 {
		return nil
	}
	return translate(q.UpsertSatelliteProcesses(ctx, p), "upsert processes")
}
