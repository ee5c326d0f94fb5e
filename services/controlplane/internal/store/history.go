package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// Kinds of configuration whose versions are kept.
const (
	KindTemplate          = "template"
	KindInstallation      = "installation"
	KindUserConfiguration = "user_configuration"
)

// Actions that make a version.
const (
	VersionCreated    = "created"
	VersionUpdated    = "updated"
	VersionRolledBack = "rolled_back"
)

// Author is who made a change: a user, or the system with a nil ID.
type Author struct {
	ID *uuid.UUID
	// Name is the user's email, or "system".
	Name string
}

// SystemAuthor is the author of changes the control plane makes on its own, such as loading templates at
// start.
var SystemAuthor = Author{Name: "system"}

// Subject names the configuration a history is of: a template (TeamID nil for a global one), an
// installation, or one member's configuration of an installation (UserID set).
type Subject struct {
	Kind   string
	ID     uuid.UUID
	TeamID *uuid.UUID
	UserID uuid.UUID
}

// Change is one field that differs between two versions. A secret's values are never given: Secret says
// the value was set, changed or removed, and Old and New stay empty.
type Change struct {
	// Field is the column, or for settings "env.NAME", "headers.NAME", "query_params.NAME",
	// "arg_values.NAME".
	Field  string          `json:"field"`
	Old    json.RawMessage `json:"old,omitempty"`
	New    json.RawMessage `json:"new,omitempty"`
	Secret bool            `json:"secret,omitempty"`
}

// ConfigVersion is one kept version of a configuration.
type ConfigVersion struct {
	Version      int
	Action       string
	RolledBackTo int
	ActorID      *uuid.UUID
	Actor        string
	CreatedAt    time.Time
	// Changes are what differs from the version before; every field for the first.
	Changes []Change
}

// settingFields are the snapshot fields that map names to stored settings; they are compared name by name,
// and secrets among them by their sealed value only.
var settingFields = map[string]bool{"env": true, "headers": true, "query_params": true, "arg_values": true}

// installationSnapshot is what a version keeps of an installation: everything the team sets, secrets sealed.
type installationSnapshot struct {
	Name                  string          `json:"name"`
	Args                  []string        `json:"args"`
	ArgValues             json.RawMessage `json:"arg_values"`
	Env                   json.RawMessage `json:"env"`
	Headers               json.RawMessage `json:"headers"`
	QueryParams           json.RawMessage `json:"query_params"`
	RequestLoggingEnabled bool            `json:"request_logging_enabled"`
	ToolPrefix            *string         `json:"tool_prefix"`
}

func snapshotOfInstallation(r dbsqlc.Installation) installationSnapshot {
	return installationSnapshot{
		Name: r.Name, Args: nonNil(r.Args), ArgValues: rawOrEmpty(r.ArgValues), Env: rawOrEmpty(r.Env),
		Headers: rawOrEmpty(r.Headers), QueryParams: rawOrEmpty(r.QueryParams),
		RequestLoggingEnabled: r.RequestLoggingEnabled, ToolPrefix: r.ToolPrefix,
	}
}

// userConfigurationSnapshot is what a version keeps of a member's configuration.
type userConfigurationSnapshot struct {
	Args        []string        `json:"args"`
	ArgValues   json.RawMessage `json:"arg_values"`
	Env         json.RawMessage `json:"env"`
	Headers     json.RawMessage `json:"headers"`
	QueryParams json.RawMessage `json:"query_params"`
}

func snapshotOfUserConfiguration(r dbsqlc.UserConfiguration) userConfigurationSnapshot {
	return userConfigurationSnapshot{
		Args: nonNil(r.Args), ArgValues: rawOrEmpty(r.ArgValues), Env: rawOrEmpty(r.Env),
		Headers: rawOrEmpty(r.Headers), QueryParams: rawOrEmpty(r.QueryParams),
	}
}

// templateSnapshot is what a version keeps of a template. The slug never changes and is not kept.
type templateSnapshot struct {
	Name         string          `json:"name"`
	Description  string          `json:"description"`
	Tags         []string        `json:"tags"`
	Transport    string          `json:"transport"`
	Command      string          `json:"command"`
	Args         []string        `json:"args"`
	Env          json.RawMessage `json:"env"`
	URL          string          `json:"url"`
	Headers      json.RawMessage `json:"headers"`
	QueryParams  json.RawMessage `json:"query_params"`
	ConfigSchema json.RawMessage `json:"config_schema"`
	Sandbox      json.RawMessage `json:"sandbox"`
	Source       json.RawMessage `json:"source,omitempty"`
}

func snapshotOfTemplate(r dbsqlc.CatalogEntry) templateSnapshot {
	return templateSnapshot{
		Name: r.Name, Description: r.Description, Tags: nonNil(r.Tags), Transport: r.Transport, Command: r.Command,
		Args: nonNil(r.Args), Env: rawOrEmpty(r.Env), URL: r.Url, Headers: rawOrEmpty(r.Headers),
		QueryParams: rawOrEmpty(r.QueryParams), ConfigSchema: rawOrEmpty(r.ConfigSchema), Sandbox: rawOrEmpty(r.Sandbox),
		Source: sourceOrNone(r.Source),
	}
}

func rawOrEmpty(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("{}")
	}
	return b
}

// recordVersion appends a version of subj with snapshot, inside the caller's transaction, listing what
// changed since the subject's newest version. It returns the new version's number.
func recordVersion(ctx context.Context, q *dbsqlc.Queries, subj Subject, action string, rolledBackTo int, by Author, snapshot any) (int, error) {
	raw, err := json.Marshal(snapshot)
	if err != nil {
		return 0, fmt.Errorf("encode version: %w", err)
	}
	var prior []byte
	next := 1
	switch last, err := q.LatestConfigVersion(ctx, subj.Kind, subj.ID, subj.UserID); {
	case err == nil:
		prior, next = last.Snapshot, int(last.Version)+1
	case !errors.Is(err, pgx.ErrNoRows):
		return 0, translate(err, "latest configuration version")
	}
	changes, err := diffSnapshots(prior, raw)
	if err != nil {
		return 0, err
	}
	// A save that changes nothing adds no version: otherwise any member saving their own configuration
	// in a loop would grow the history without bound.
	if prior != nil && len(changes) == 0 && rolledBackTo == 0 {
		return next - 1, nil
	}
	encoded, err := json.Marshal(changes)
	if err != nil {
		return 0, fmt.Errorf("encode changes: %w", err)
	}
	p := dbsqlc.InsertConfigVersionParams{
		Kind: subj.Kind, SubjectID: subj.ID, UserID: subj.UserID, TeamID: subj.TeamID, Version: int32(next),
		Action: action, ActorID: by.ID, Actor: by.Name, Snapshot: raw, Changes: encoded,
	}
	if rolledBackTo > 0 {
		to := int32(rolledBackTo)
		p.RolledBackTo = &to
	}
	if _, err := q.InsertConfigVersion(ctx, p); err != nil {
		return 0, translate(err, "record configuration version")
	}
	return next, nil
}

// diffSnapshots lists the fields that differ from old to new (old empty: every field of new), in field
// order. Settings are compared name by name; a secret on either side is reported without values, and
// counts as changed when its sealed value differs, which a new value always makes it.
func diffSnapshots(old, new []byte) ([]Change, error) {
	var a, b map[string]json.RawMessage
	if len(old) > 0 {
		if err := json.Unmarshal(old, &a); err != nil {
			return nil, fmt.Errorf("decode version: %w", err)
		}
	}
	if err := json.Unmarshal(new, &b); err != nil {
		return nil, fmt.Errorf("decode version: %w", err)
	}
	fields := slices.Sorted(maps.Keys(b))
	for f := range a {
		if _, ok := b[f]; !ok {
			fields = append(fields, f)
		}
	}
	changes := []Change{}
	for _, f := range fields {
		if settingFields[f] {
			c, err := diffSettings(f, a[f], b[f])
			if err != nil {
				return nil, err
			}
			changes = append(changes, c...)
			continue
		}
		if !jsonEqual(a[f], b[f]) {
			changes = append(changes, Change{Field: f, Old: a[f], New: b[f]})
		}
	}
	return changes, nil
}

func diffSettings(field string, old, new json.RawMessage) ([]Change, error) {
	a, err := decodeStored(old)
	if err != nil {
		return nil, err
	}
	b, err := decodeStored(new)
	if err != nil {
		return nil, err
	}
	names := slices.Sorted(maps.Keys(b))
	for n := range a {
		if _, ok := b[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var out []Change
	for _, n := range names {
		o, hadOld := a[n]
		v, hasNew := b[n]
		if hadOld == hasNew && o == v {
			continue
		}
		c := Change{Field: field + "." + n}
		if o.Secret || v.Secret {
			c.Secret = true
		} else {
			if hadOld {
				c.Old, _ = json.Marshal(o.Value)
			}
			if hasNew {
				c.New, _ = json.Marshal(v.Value)
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// jsonEqual compares two JSON values by meaning, not by spelling.
func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	ea, _ := json.Marshal(x)
	eb, _ := json.Marshal(y)
	return bytes.Equal(ea, eb)
}

func configVersionFromRow(r dbsqlc.ConfigVersion) (ConfigVersion, error) {
	v := ConfigVersion{
		Version: int(r.Version), Action: r.Action, ActorID: r.ActorID, Actor: r.Actor, CreatedAt: r.CreatedAt,
	}
	if r.RolledBackTo != nil {
		v.RolledBackTo = int(*r.RolledBackTo)
	}
	if err := json.Unmarshal(r.Changes, &v.Changes); err != nil {
		return ConfigVersion{}, fmt.Errorf("decode changes of version %d: %w", r.Version, err)
	}
	return v, nil
}

// ListConfigVersions returns up to limit versions of subj, newest first, below version before when it is
// positive. A subject of another team has no versions here, as if it never existed.
func (s *Store) ListConfigVersions(ctx context.Context, subj Subject, before, limit int) ([]ConfigVersion, error) {
	p := dbsqlc.ListConfigVersionsParams{
		Kind: subj.Kind, SubjectID: subj.ID, UserID: subj.UserID, TeamID: subj.TeamID, MaxRows: int32(limit),
	}
	if before > 0 {
		b := int32(before)
		p.BeforeVersion = &b
	}
	rows, err := s.q.ListConfigVersions(ctx, p)
	if err != nil {
		return nil, translate(err, "list configuration versions")
	}
	out := make([]ConfigVersion, len(rows))
	for i, r := range rows {
		if out[i], err = configVersionFromRow(r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func getConfigVersion(ctx context.Context, q *dbsqlc.Queries, subj Subject, version int) (dbsqlc.ConfigVersion, error) {
	r, err := q.GetConfigVersion(ctx, dbsqlc.GetConfigVersionParams{
		Kind: subj.Kind, SubjectID: subj.ID, UserID: subj.UserID, Version: int32(version), TeamID: subj.TeamID,
	})
	return r, translate(err, fmt.Sprintf("version %d", version))
}

// CompareConfigVersions lists what changed from version from to version to of subj; either may be the
// older. A version of another team's subject is ErrNotFound.
func (s *Store) CompareConfigVersions(ctx context.Context, subj Subject, from, to int) ([]Change, error) {
	a, err := getConfigVersion(ctx, s.q, subj, from)
	if err != nil {
		return nil, err
	}
	b, err := getConfigVersion(ctx, s.q, subj, to)
	if err != nil {
		return nil, err
	}
	return diffSnapshots(a.Snapshot, b.Snapshot)
}

// ErrVersionUnsealable reports a version whose secrets were sealed under a key the control plane no longer
// holds, so rolling back to it would leave the installation unusable.
var ErrVersionUnsealable = errors.New("the version holds secrets sealed with a key that is no longer configured; set them again instead")

// Rollback is the outcome of RollbackInstallation.
type Rollback struct {
	Installation Installation
	// Version is the new version the rollback made.
	Version int
}

// RollbackInstallation makes one of a team's installations what it was at version, secrets restored from
// the values sealed then, as a new version; the team's satellites are told at once and the audit log
// records who did it, all in one transaction. The version's values are checked against the template as
// it is now, since the template may have changed since.
func (s *Store) RollbackInstallation(ctx context.Context, teamID, id uuid.UUID, version int, by Author) (Rollback, error) {
	var out Rollback
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if err := q.LockTeam(ctx, teamID); err != nil {
			return translate(err, "lock team")
		}
		prior, err := q.LockInstallation(ctx, id, teamID)
		if err != nil {
			return translate(err, "installation")
		}
		subj := Subject{Kind: KindInstallation, ID: id, TeamID: &teamID}
		v, err := getConfigVersion(ctx, q, subj, version)
		if err != nil {
			return err
		}
		var snap installationSnapshot
		if err := json.Unmarshal(v.Snapshot, &snap); err != nil {
			return fmt.Errorf("decode version %d: %w", version, err)
		}
		// A secret sealed under a key since dropped would make every configuration of the team's satellites
		// fail to open; refuse the rollback instead.
		for _, raw := range [][]byte{snap.ArgValues, snap.Env, snap.Headers, snap.QueryParams} {
			if _, err := s.open(raw); err != nil {
				return fmt.Errorf("version %d: %w", version, ErrVersionUnsealable)
			}
		}
		tmpl, err := s.template(ctx, q, teamID, prior.CatalogEntryID)
		if err != nil {
			return err
		}
		level := sealedLevel{snap.ArgValues, snap.Env, snap.Headers, snap.QueryParams}
		has, err := level.has()
		if err != nil {
			return err
		}
		values, err := level.mask()
		if err != nil {
			return err
		}
		if err := tmpl.ConfigSchema.checkLevel(ScopeTeamField, values, []Values{tmpl.Values()}, has); err != nil {
			return err
		}
		prefix := tmpl.Slug
		if snap.ToolPrefix != nil {
			prefix = *snap.ToolPrefix
		}
		if err := checkToolPrefix(ctx, q, teamID, id, prefix); err != nil {
			return err
		}
		// The version's stored values go back as they are, secrets as they were sealed.
		row, err := q.UpdateInstallation(ctx, dbsqlc.UpdateInstallationParams{
			ID: id, TeamID: teamID, Name: snap.Name, Args: nonNil(snap.Args), ArgValues: snap.ArgValues, Env: snap.Env,
			Headers: snap.Headers, QueryParams: snap.QueryParams, RequestLoggingEnabled: snap.RequestLoggingEnabled,
			ToolPrefix: snap.ToolPrefix,
		})
		if err != nil {
			return translate(err, "roll back installation")
		}
		if out.Version, err = recordVersion(ctx, q, subj, VersionRolledBack, version, by, snapshotOfInstallation(row)); err != nil {
			return err
		}
		if err := configure(ctx, q, teamID, EventInstallationUpdated, id); err != nil {
			return err
		}
		if err := audit(ctx, q, AuditEvent{
			ActorID: by.ID, Actor: by.Name, TeamID: &teamID, Action: "installation.rolled_back", Target: id.String(),
			Details: map[string]string{"to_version": fmt.Sprint(version), "new_version": fmt.Sprint(out.Version)},
		}); err != nil {
			return err
		}
		out.Installation, err = installationFromRow(row, tmpl.Slug)
		return err
	})
	return out, err
}
