package store

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// Team is a group of users sharing installations.
type Team struct {
	ID        uuid.UUID
	Slug      string
	Name      string
	OwnerID   *uuid.UUID
	Personal  bool
	CreatedAt time.Time
}

// User is a person who uses MCP servers.
type User struct {
	ID         uuid.UUID
	Slug       string
	Email      string
	Name       string
	GlobalRole string
	CreatedAt  time.Time
}

// CatalogEntry is an MCP server template. TeamID is nil for global entries.
type CatalogEntry struct {
	ID          uuid.UUID
	TeamID      *uuid.UUID
	Slug        string
	Name        string
	Description string
	Transport   string
	Command     string
	Args        []string
	Env         Settings
	URL         string
	Headers     Settings
	QueryParams Settings
}

// Installation is a team's installation of a catalog entry.
type Installation struct {
	ID                    uuid.UUID
	TeamID                uuid.UUID
	CatalogEntryID        uuid.UUID
	Name                  string
	Args                  []string
	Env                   Settings
	Headers               Settings
	QueryParams           Settings
	RequestLoggingEnabled bool
	// ToolPrefix replaces the server's slug before tool and prompt names at the team endpoint; nil keeps the
	// slug and "" means no prefix.
	ToolPrefix *string
}

// UserConfiguration is one member's own level of an installation's configuration.
type UserConfiguration struct {
	InstallationID uuid.UUID
	TeamID         uuid.UUID
	UserID         uuid.UUID
	Args           []string
	Env            Settings
	Headers        Settings
	QueryParams    Settings
}

// CreateTeam creates a team.
func (s *Store) CreateTeam(ctx context.Context, slug, name string) (Team, error) {
	row, err := s.q.CreateTeam(ctx, slug, name)
	if err != nil {
		return Team{}, translate(err, "create team")
	}
	return teamFromRow(row), nil
}

// CreateUser creates a user.
func (s *Store) CreateUser(ctx context.Context, slug, email, name string) (User, error) {
	row, err := s.q.CreateUser(ctx, slug, email, name)
	if err != nil {
		return User{}, translate(err, "create user")
	}
	return userFromRow(row), nil
}

// CreateCatalogEntry creates a template, sealing its secret settings.
func (s *Store) CreateCatalogEntry(ctx context.Context, e CatalogEntry) (CatalogEntry, error) {
	env, headers, query, err := s.sealAll(e.Env, e.Headers, e.QueryParams)
	if err != nil {
		return CatalogEntry{}, err
	}
	row, err := s.q.CreateCatalogEntry(ctx, dbsqlc.CreateCatalogEntryParams{
		TeamID: e.TeamID, Slug: e.Slug, Name: e.Name, Description: e.Description, Transport: e.Transport,
		Command: e.Command, Args: nonNil(e.Args), Env: env, Url: e.URL, Headers: headers, QueryParams: query,
	})
	if err != nil {
		return CatalogEntry{}, translate(err, "create catalog entry")
	}
	e.ID = row.ID
	return e, nil
}

// CreateInstallation installs a catalog entry for a team and gives every member an instance of it.
func (s *Store) CreateInstallation(ctx context.Context, in Installation) (Installation, error) {
	env, headers, query, err := s.sealAll(in.Env, in.Headers, in.QueryParams)
	if err != nil {
		return Installation{}, err
	}
	err = s.inTx(ctx, func(q *dbsqlc.Queries) error {
		row, err := q.CreateInstallation(ctx, dbsqlc.CreateInstallationParams{
			TeamID: in.TeamID, CatalogEntryID: in.CatalogEntryID, Name: in.Name, Args: nonNil(in.Args), Env: env,
			Headers: headers, QueryParams: query, RequestLoggingEnabled: in.RequestLoggingEnabled, ToolPrefix: in.ToolPrefix,
		})
		if err != nil {
			return translate(err, "create installation")
		}
		in.ID = row.ID
		return translate(q.EnsureTeamInstances(ctx, in.TeamID), "create instances")
	})
	return in, err
}

// SetUserConfiguration stores a member's configuration of an installation.
func (s *Store) SetUserConfiguration(ctx context.Context, uc UserConfiguration) error {
	env, headers, query, err := s.sealAll(uc.Env, uc.Headers, uc.QueryParams)
	if err != nil {
		return err
	}
	err = s.q.UpsertUserConfiguration(ctx, dbsqlc.UpsertUserConfigurationParams{
		InstallationID: uc.InstallationID, TeamID: uc.TeamID, UserID: uc.UserID, Args: nonNil(uc.Args), Env: env,
		Headers: headers, QueryParams: query,
	})
	return translate(err, "set user configuration")
}

func (s *Store) sealAll(env, headers, query Settings) (e, h, q []byte, err error) {
	if e, err = s.seal(env); err != nil {
		return nil, nil, nil, err
	}
	if h, err = s.seal(headers); err != nil {
		return nil, nil, nil, err
	}
	if q, err = s.seal(query); err != nil {
		return nil, nil, nil, err
	}
	return e, h, q, nil
}

// nonNil keeps a nil slice from being stored as NULL in a not-null array column.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
