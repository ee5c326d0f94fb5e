package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

var (
	// ErrGlobalTemplate reports a team's admin writing a global template.
	ErrGlobalTemplate = errors.New("global templates are written by global admins only")
	// ErrInstalled reports deleting a template that teams have installed.
	ErrInstalled = fmt.Errorf("%w: the template is installed; delete its installations first", ErrConflict)
)

// CatalogFilter selects catalog entries: the global ones, the team's own when TeamID is set, those whose
// name, slug or description contains Search (ignoring case) and that carry every one of Tags.
type CatalogFilter struct {
	TeamID    *uuid.UUID
	Search    string
	Tags      []string
	AfterSlug string
	Limit     int
}

func (s *Store) catalogEntryFromRow(r dbsqlc.CatalogEntry) (CatalogEntry, error) {
	e := CatalogEntry{
		ID: r.ID, TeamID: r.TeamID, Slug: r.Slug, Name: r.Name, Description: r.Description, Transport: r.Transport,
		Command: r.Command, Args: r.Args, URL: r.Url, Tags: r.Tags, Sandbox: r.Sandbox, Source: sourceOrNone(r.Source), CreatedAt: r.CreatedAt,
		UpdatedAt: r.UpdatedAt, Stop: stopOf(StopScopeTemplate, r.StopReason, r.StoppedAt), PerUserAuthorization: r.PerUserAuthorization,
	}
	v, err := sealedLevel{env: r.Env, headers: r.Headers, query: r.QueryParams}.mask()
	if err != nil {
		return CatalogEntry{}, err
	}
	e.Env, e.Headers, e.QueryParams = v.Env, v.Headers, v.QueryParams
	if e.ConfigSchema, err = decodeSchema(r.ConfigSchema); err != nil {
		return CatalogEntry{}, err
	}
	return e, nil
}

// CreateCatalogEntry creates a template, sealing its secret settings. Secrets come back masked.
func (s *Store) CreateCatalogEntry(ctx context.Context, e CatalogEntry, by Author) (CatalogEntry, error) {
	schema, err := e.encodeSchema()
	if err != nil {
		return CatalogEntry{}, err
	}
	env, headers, query, err := s.sealAll(e.Env, e.Headers, e.QueryParams)
	if err != nil {
		return CatalogEntry{}, err
	}
	var row dbsqlc.CatalogEntry
	err = s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if err := q.LockCatalogSlug(ctx, e.Slug); err != nil {
			return translate(err, "lock catalog slug")
		}
		shadowed, err := q.CatalogSlugShadowed(ctx, e.Slug, e.TeamID)
		if err != nil {
			return translate(err, "check catalog slug")
		}
		if shadowed {
			return fmt.Errorf("create catalog entry: %w", ErrAlreadyExists)
		}
		row, err = q.CreateCatalogEntry(ctx, dbsqlc.CreateCatalogEntryParams{
			TeamID: e.TeamID, Slug: e.Slug, Name: e.Name, Description: e.Description, Tags: nonNil(e.Tags),
			Transport: e.Transport, Command: e.Command, Args: nonNil(e.Args), Env: env, Url: e.URL, Headers: headers,
			QueryParams: query, ConfigSchema: schema, Sandbox: sandboxOrDefault(e.Sandbox),
			Source: sandboxOrDefault(e.Source), PerUserAuthorization: e.PerUserAuthorization,
		})
		if err != nil {
			return translate(err, "create catalog entry")
		}
		subj := Subject{Kind: KindTemplate, ID: row.ID, TeamID: row.TeamID}
		_, err = recordVersion(ctx, q, subj, VersionCreated, 0, by, snapshotOfTemplate(row))
		return err
	})
	if err != nil {
		return CatalogEntry{}, err
	}
	return s.catalogEntryFromRow(row)
}

// encodeSchema checks the template's schema, marks the template's values of secret fields secret and
// encodes the schema for storage.
func (e CatalogEntry) encodeSchema() ([]byte, error) {
	if err := e.ConfigSchema.Check(); err != nil {
		return nil, err
	}
	e.ConfigSchema.markSecrets(e.Values())
	schema, err := json.Marshal(e.ConfigSchema)
	if err != nil {
		return nil, fmt.Errorf("encode config schema: %w", err)
	}
	return schema, nil
}

// sandboxOrDefault stores an unset sandbox as the empty object, which keeps every default.
func sandboxOrDefault(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage("{}")
	}
	return raw
}

// sourceOrNone reads a stored source: the empty object is none.
func sourceOrNone(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "{}" {
		return nil
	}
	return raw
}

// writable checks that a template belongs to teamID: a global template (teamID nil) or the team's own.
func writable(r dbsqlc.CatalogEntry, teamID *uuid.UUID) error {
	switch {
	case teamID == nil && r.TeamID == nil:
		return nil
	case teamID != nil && r.TeamID == nil:
		return ErrGlobalTemplate
	case teamID != nil && *r.TeamID == *teamID:
		return nil
	}
	return fmt.Errorf("catalog entry: %w", ErrNotFound)
}

// visible reports whether a team (nil: nobody's) may read a template: the global ones and its own.
func visible(r dbsqlc.CatalogEntry, teamID *uuid.UUID) bool {
	return r.TeamID == nil || teamID != nil && *r.TeamID == *teamID
}

// UpdateCatalogEntry replaces a template of teamID (nil: a global one), all but its slug; a secret without a
// value keeps the stored one. Every team that installed it is told to reconfigure.
func (s *Store) UpdateCatalogEntry(ctx context.Context, e CatalogEntry, by Author) (CatalogEntry, error) {
	schema, err := e.encodeSchema()
	if err != nil {
		return CatalogEntry{}, err
	}
	var out CatalogEntry
	err = s.inTx(ctx, func(q *dbsqlc.Queries) error {
		prior, err := q.LockCatalogEntry(ctx, e.ID)
		if err != nil {
			return translate(err, "catalog entry")
		}
		if err := writable(prior, e.TeamID); err != nil {
			return err
		}
		p := dbsqlc.UpdateCatalogEntryParams{
			ID: e.ID, Name: e.Name, Description: e.Description, Tags: nonNil(e.Tags), Transport: e.Transport,
			Command: e.Command, Args: nonNil(e.Args), Url: e.URL, ConfigSchema: schema, Sandbox: sandboxOrDefault(e.Sandbox),
			Source: sandboxOrDefault(e.Source), PerUserAuthorization: e.PerUserAuthorization,
		}
		if p.Env, err = s.sealOver(prior.Env, e.Env); err != nil {
			return err
		}
		if p.Headers, err = s.sealOver(prior.Headers, e.Headers); err != nil {
			return err
		}
		if p.QueryParams, err = s.sealOver(prior.QueryParams, e.QueryParams); err != nil {
			return err
		}
		row, err := q.UpdateCatalogEntry(ctx, p)
		if err != nil {
			return translate(err, "update catalog entry")
		}
		subj := Subject{Kind: KindTemplate, ID: row.ID, TeamID: row.TeamID}
		if _, err := recordVersion(ctx, q, subj, VersionUpdated, 0, by, snapshotOfTemplate(row)); err != nil {
			return err
		}
		teams, err := q.ListTeamsInstallingEntry(ctx, e.ID)
		if err != nil {
			return translate(err, "list teams installing the template")
		}
		for _, teamID := range teams {
			if err := configure(ctx, q, teamID, EventInstallationUpdated, uuid.Nil); err != nil {
				return err
			}
		}
		out, err = s.catalogEntryFromRow(row)
		return err
	})
	return out, err
}

// DeleteCatalogEntry deletes a template of teamID (nil: a global one) that no team has installed.
func (s *Store) DeleteCatalogEntry(ctx context.Context, teamID *uuid.UUID, id uuid.UUID) error {
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		prior, err := q.LockCatalogEntry(ctx, id)
		if err != nil {
			return translate(err, "catalog entry")
		}
		if err := writable(prior, teamID); err != nil {
			return err
		}
		teams, err := q.ListTeamsInstallingEntry(ctx, id)
		if err != nil {
			return translate(err, "list teams installing the template")
		}
		if len(teams) > 0 {
			return ErrInstalled
		}
		n, err := q.DeleteCatalogEntry(ctx, id)
		return rowsAffected(n, err, "delete catalog entry")
	})
}

// GetCatalogEntry returns a template that teamID may read (nil: a global one), secrets masked.
func (s *Store) GetCatalogEntry(ctx context.Context, teamID *uuid.UUID, id uuid.UUID) (CatalogEntry, error) {
	row, err := s.q.GetCatalogEntry(ctx, id)
	if err != nil {
		return CatalogEntry{}, translate(err, "catalog entry")
	}
	if !visible(row, teamID) {
		return CatalogEntry{}, fmt.Errorf("catalog entry: %w", ErrNotFound)
	}
	return s.catalogEntryFromRow(row)
}

// ListCatalogEntries returns up to f.Limit templates after f.AfterSlug, by slug, secrets masked.
func (s *Store) ListCatalogEntries(ctx context.Context, f CatalogFilter) ([]CatalogEntry, error) {
	pattern := ""
	if f.Search != "" {
		pattern = "%" + likeEscaper.Replace(f.Search) + "%"
	}
	rows, err := s.q.ListCatalogEntries(ctx, dbsqlc.ListCatalogEntriesParams{
		TeamID: f.TeamID, Pattern: pattern, Tags: nonNil(f.Tags), AfterSlug: f.AfterSlug, MaxRows: int32(f.Limit),
	})
	if err != nil {
		return nil, translate(err, "list catalog entries")
	}
	out := make([]CatalogEntry, len(rows))
	for i, r := range rows {
		if out[i], err = s.catalogEntryFromRow(r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// likeEscaper makes user text match itself literally inside an ILIKE pattern, whose escape is a backslash.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
