package store

import (
	"context"
	"encoding/json"
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
	// ToolsMode is ToolsModeAll or ToolsModeSearch, for members without a mode of their own.
	ToolsMode string
	// GlobalFallback lets global satellites serve the team while none of its own satellites is live.
	GlobalFallback bool
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
	ID           uuid.UUID
	TeamID       *uuid.UUID
	Slug         string
	Name         string
	Description  string
	Transport    string
	Command      string
	Args         []string
	Env          Settings
	URL          string
	Headers      Settings
	QueryParams  Settings
	Tags         []string
	ConfigSchema ConfigSchema
	// Sandbox is orrery.satellite.v1.Sandbox in protobuf JSON; empty keeps the satellite's defaults.
	Sandbox json.RawMessage
	// Source is orrery.satellite.v1.Source in protobuf JSON: the archive a stdio server is built from;
	// empty for none.
	Source json.RawMessage
	// PerUserAuthorization marks a remote server that authorizes each member with OAuth (package remoteauth).
	PerUserAuthorization bool
	CreatedAt            time.Time
	UpdatedAt            time.Time
	// Stop, when set, is the template's emergency stop.
	Stop *Stop
}

// Installation is a team's installation of a catalog entry.
type Installation struct {
	ID                    uuid.UUID
	TeamID                uuid.UUID
	CatalogEntryID        uuid.UUID
	Name                  string
	Args                  []string
	ArgValues             Settings
	Env                   Settings
	Headers               Settings
	QueryParams           Settings
	RequestLoggingEnabled bool
	// ToolPrefix replaces the server's slug before tool and prompt names at the team endpoint; nil keeps the
	// slug and "" means no prefix.
	ToolPrefix *string
	// ServerSlug is the installed template's slug; set on reads.
	ServerSlug string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	// Stop, when set, says why the installation is out of service: its own emergency stop, or its template's.
	Stop *Stop
}

// EffectiveToolPrefix is the prefix of the installation's tool names: ToolPrefix, or the server's slug.
func (in Installation) EffectiveToolPrefix() string {
	if in.ToolPrefix != nil {
		return *in.ToolPrefix
	}
	return in.ServerSlug
}

// Values are the installation's team-level settings.
func (in Installation) Values() Values {
	return Values{ArgValues: in.ArgValues, Env: in.Env, Headers: in.Headers, QueryParams: in.QueryParams}
}

// UserConfiguration is one member's own level of an installation's configuration.
type UserConfiguration struct {
	InstallationID uuid.UUID
	TeamID         uuid.UUID
	UserID         uuid.UUID
	Args           []string
	ArgValues      Settings
	Env            Settings
	Headers        Settings
	QueryParams    Settings
	// UpdatedAt is zero when the member has never configured the installation.
	UpdatedAt time.Time
}

// Values are the member's own settings.
func (uc UserConfiguration) Values() Values {
	return Values{ArgValues: uc.ArgValues, Env: uc.Env, Headers: uc.Headers, QueryParams: uc.QueryParams}
}

// CreateTeam creates a team.
func (s *Store) CreateTeam(ctx context.Context, slug, name string) (Team, error) {
	var team Team
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		row, err := q.CreateTeam(ctx, slug, name)
		if err != nil {
			return translate(err, "create team")
		}
		team = teamFromRow(row)
		return s.placeNewTeam(ctx, q, team.ID)
	})
	return team, err
}

// CreateUser creates a user.
func (s *Store) CreateUser(ctx context.Context, slug, email, name string) (User, error) {
	row, err := s.q.CreateUser(ctx, slug, email, name)
	if err != nil {
		return User{}, translate(err, "create user")
	}
	return userFromRow(row), nil
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
