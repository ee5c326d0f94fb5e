package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

func installationFromRow(r dbsqlc.Installation, serverSlug string) (Installation, error) {
	in := Installation{
		ID: r.ID, TeamID: r.TeamID, CatalogEntryID: r.CatalogEntryID, Name: r.Name, Args: r.Args,
		RequestLoggingEnabled: r.RequestLoggingEnabled, ToolPrefix: r.ToolPrefix, ServerSlug: serverSlug,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Stop: stopOf(StopScopeInstallation, r.StopReason, r.StoppedAt),
	}
	v, err := sealedLevel{r.ArgValues, r.Env, r.Headers, r.QueryParams}.mask()
	in.ArgValues, in.Env, in.Headers, in.QueryParams = v.ArgValues, v.Env, v.Headers, v.QueryParams
	return in, err
}

// sealedLevel is one configuration level as stored.
type sealedLevel struct{ argValues, env, headers, query []byte }

// sealLevel seals a level's values over the stored ones (see sealOver).
func (s *Store) sealLevel(prior sealedLevel, v Values) (sealedLevel, error) {
	var out sealedLevel
	var err error
	if out.argValues, err = s.sealOver(prior.argValues, v.ArgValues); err != nil {
		return out, err
	}
	if out.env, err = s.sealOver(prior.env, v.Env); err != nil {
		return out, err
	}
	if out.headers, err = s.sealOver(prior.headers, v.Headers); err != nil {
		return out, err
	}
	out.query, err = s.sealOver(prior.query, v.QueryParams)
	return out, err
}

// mask decodes the level with its secrets masked.
func (l sealedLevel) mask() (Values, error) {
	var v Values
	var err error
	for _, c := range []struct {
		dst *Settings
		raw []byte
	}{{&v.ArgValues, l.argValues}, {&v.Env, l.env}, {&v.Headers, l.headers}, {&v.QueryParams, l.query}} {
		if *c.dst, err = mask(c.raw); err != nil {
			return Values{}, err
		}
	}
	return v, nil
}

// has reports which secrets the level stores, by schema kind and name.
func (l sealedLevel) has() (func(kind, name string) bool, error) {
	stored := map[string]map[string]storedSetting{}
	for kind, raw := range map[string][]byte{"arg_values": l.argValues, "env": l.env, "headers": l.headers, "query_params": l.query} {
		m, err := decodeStored(raw)
		if err != nil {
			return nil, err
		}
		stored[kind] = m
	}
	return func(kind, name string) bool { return stored[kind][name].Secret }, nil
}

// template returns the template an installation of teamID may use, with its own values masked.
func (s *Store) template(ctx context.Context, q *dbsqlc.Queries, teamID, id uuid.UUID) (CatalogEntry, error) {
	row, err := q.GetCatalogEntry(ctx, id)
	if err != nil {
		return CatalogEntry{}, translate(err, "catalog entry")
	}
	if !visible(row, &teamID) {
		return CatalogEntry{}, fmt.Errorf("catalog entry: %w", ErrNotFound)
	}
	return s.catalogEntryFromRow(row)
}

// Values are the template's own settings, the level below every installation's.
func (e CatalogEntry) Values() Values {
	return Values{Env: e.Env, Headers: e.Headers, QueryParams: e.QueryParams}
}

// checkToolPrefix refuses a prefix under which the installation's tool names could collide with another
// installation's of the team at the team endpoint, where a tool is named {prefix}__{tool}: the same prefix
// (two unprefixed installations included), or one prefix that continues another past a "__" ("gh" and
// "gh__v2" both make "gh__v2__list").
func checkToolPrefix(ctx context.Context, q *dbsqlc.Queries, teamID, self uuid.UUID, prefix string) error {
	rows, err := q.ListToolPrefixes(ctx, teamID)
	if err != nil {
		return translate(err, "list tool prefixes")
	}
	for _, r := range rows {
		switch {
		case r.ID == self:
		case r.Prefix == prefix && prefix == "":
			return &FieldError{"tool_prefix", "another installation of the team already has no prefix; tool names could collide"}
		case r.Prefix == prefix:
			return &FieldError{"tool_prefix", fmt.Sprintf("%q is already the tool prefix of another installation of the team", prefix)}
		case r.Prefix != "" && prefix != "" && (strings.HasPrefix(prefix, r.Prefix+"__") || strings.HasPrefix(r.Prefix, prefix+"__")):
			return &FieldError{"tool_prefix", fmt.Sprintf("%q and another installation's %q could make the same tool names", prefix, r.Prefix)}
		}
	}
	return nil
}

// CreateInstallation installs a catalog entry for a team after checking its values against the template's
// schema, gives every member an instance of it and tells the team's satellites at once. Secrets come back
// masked.
func (s *Store) CreateInstallation(ctx context.Context, in Installation, by Author) (Installation, error) {
	var out Installation
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if err := q.LockTeam(ctx, in.TeamID); err != nil {
			return translate(err, "lock team")
		}
		tmpl, err := s.template(ctx, q, in.TeamID, in.CatalogEntryID)
		if err != nil {
			return err
		}
		values := in.Values()
		if err := tmpl.ConfigSchema.checkLevel(ScopeTeamField, values, []Values{tmpl.Values()}, noSecrets); err != nil {
			return err
		}
		in.ServerSlug = tmpl.Slug
		if err := checkToolPrefix(ctx, q, in.TeamID, uuid.Nil, in.EffectiveToolPrefix()); err != nil {
			return err
		}
		sealed, err := s.sealLevel(sealedLevel{}, values)
		if err != nil {
			return err
		}
		row, err := q.CreateInstallation(ctx, dbsqlc.CreateInstallationParams{
			TeamID: in.TeamID, CatalogEntryID: in.CatalogEntryID, Name: in.Name, Args: nonNil(in.Args),
			ArgValues: sealed.argValues, Env: sealed.env, Headers: sealed.headers, QueryParams: sealed.query,
			RequestLoggingEnabled: in.RequestLoggingEnabled, ToolPrefix: in.ToolPrefix,
		})
		if err != nil {
			return translate(err, "create installation")
		}
		if err := q.EnsureTeamInstances(ctx, in.TeamID); err != nil {
			return translate(err, "create instances")
		}
		if err := configure(ctx, q, in.TeamID, EventInstallationCreated, row.ID); err != nil {
			return err
		}
		subj := Subject{Kind: KindInstallation, ID: row.ID, TeamID: &row.TeamID}
		if _, err := recordVersion(ctx, q, subj, VersionCreated, 0, by, snapshotOfInstallation(row)); err != nil {
			return err
		}
		out, err = installationFromRow(row, tmpl.Slug)
		return err
	})
	return out, err
}

func noSecrets(string, string) bool { return false }

// UpdateInstallation replaces one of a team's installations, checked as on creation; a secret without a
// value keeps the stored one. The team's satellites are told at once.
func (s *Store) UpdateInstallation(ctx context.Context, in Installation, by Author) (Installation, error) {
	var out Installation
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if err := q.LockTeam(ctx, in.TeamID); err != nil {
			return translate(err, "lock team")
		}
		prior, err := q.LockInstallation(ctx, in.ID, in.TeamID)
		if err != nil {
			return translate(err, "installation")
		}
		tmpl, err := s.template(ctx, q, in.TeamID, prior.CatalogEntryID)
		if err != nil {
			return err
		}
		stored := sealedLevel{prior.ArgValues, prior.Env, prior.Headers, prior.QueryParams}
		has, err := stored.has()
		if err != nil {
			return err
		}
		values := in.Values()
		if err := tmpl.ConfigSchema.checkLevel(ScopeTeamField, values, []Values{tmpl.Values()}, has); err != nil {
			return err
		}
		in.ServerSlug = tmpl.Slug
		if err := checkToolPrefix(ctx, q, in.TeamID, in.ID, in.EffectiveToolPrefix()); err != nil {
			return err
		}
		sealed, err := s.sealLevel(stored, values)
		if err != nil {
			return err
		}
		row, err := q.UpdateInstallation(ctx, dbsqlc.UpdateInstallationParams{
			ID: in.ID, TeamID: in.TeamID, Name: in.Name, Args: nonNil(in.Args), ArgValues: sealed.argValues,
			Env: sealed.env, Headers: sealed.headers, QueryParams: sealed.query,
			RequestLoggingEnabled: in.RequestLoggingEnabled, ToolPrefix: in.ToolPrefix,
		})
		if err != nil {
			return translate(err, "update installation")
		}
		if err := configure(ctx, q, in.TeamID, EventInstallationUpdated, row.ID); err != nil {
			return err
		}
		subj := Subject{Kind: KindInstallation, ID: row.ID, TeamID: &row.TeamID}
		if _, err := recordVersion(ctx, q, subj, VersionUpdated, 0, by, snapshotOfInstallation(row)); err != nil {
			return err
		}
		out, err = installationFromRow(row, tmpl.Slug)
		return err
	})
	return out, err
}

// DeleteInstallation removes one of a team's installations with its instances and user configurations, and
// tells the team's satellites with high priority.
func (s *Store) DeleteInstallation(ctx context.Context, teamID, id uuid.UUID) error {
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		n, err := q.DeleteInstallation(ctx, id, teamID)
		if err := rowsAffected(n, err, "installation"); err != nil {
			return err
		}
		return configure(ctx, q, teamID, EventInstallationDeleted, id)
	})
}

// GetInstallation returns one of a team's installations, secrets masked.
func (s *Store) GetInstallation(ctx context.Context, teamID, id uuid.UUID) (Installation, error) {
	r, err := s.q.GetInstallation(ctx, id, teamID)
	if err != nil {
		return Installation{}, translate(err, "installation")
	}
	in, err := installationFromRow(r.Installation, r.ServerSlug)
	in.Stop = installationStop(r.TemplateStopReason, r.TemplateStoppedAt, r.Installation)
	return in, err
}

// ListInstallations returns up to limit of a team's installations after the cursor, oldest first, secrets
// masked.
func (s *Store) ListInstallations(ctx context.Context, teamID uuid.UUID, after *Cursor, limit int) ([]Installation, error) {
	afterAt, afterID := cursorArgs(after)
	rows, err := s.q.ListInstallations(ctx, teamID, afterAt, afterID, int32(limit))
	if err != nil {
		return nil, translate(err, "list installations")
	}
	out := make([]Installation, len(rows))
	for i, r := range rows {
		out[i], err = installationFromRow(r.Installation, r.ServerSlug)
		if err != nil {
			return nil, err
		}
		out[i].Stop = installationStop(r.TemplateStopReason, r.TemplateStoppedAt, r.Installation)
	}
	return out, nil
}

func userConfigurationFromRow(r dbsqlc.UserConfiguration) (UserConfiguration, error) {
	uc := UserConfiguration{
		InstallationID: r.InstallationID, TeamID: r.TeamID, UserID: r.UserID, Args: r.Args, UpdatedAt: r.UpdatedAt,
	}
	v, err := sealedLevel{r.ArgValues, r.Env, r.Headers, r.QueryParams}.mask()
	uc.ArgValues, uc.Env, uc.Headers, uc.QueryParams = v.ArgValues, v.Env, v.Headers, v.QueryParams
	return uc, err
}

// GetUserConfiguration returns a member's configuration of one of the team's installations, secrets masked;
// empty when they have set nothing.
func (s *Store) GetUserConfiguration(ctx context.Context, teamID, installationID, userID uuid.UUID) (UserConfiguration, error) {
	if _, err := s.q.GetInstallation(ctx, installationID, teamID); err != nil {
		return UserConfiguration{}, translate(err, "installation")
	}
	r, err := s.q.GetUserConfiguration(ctx, installationID, teamID, userID)
	if errors.Is(err, pgx.ErrNoRows) {
		return UserConfiguration{InstallationID: installationID, TeamID: teamID, UserID: userID}, nil
	}
	if err != nil {
		return UserConfiguration{}, translate(err, "user configuration")
	}
	return userConfigurationFromRow(r)
}

// SetUserConfiguration replaces a member's configuration of one of the team's installations after checking
// it against the template's schema, and tells the team's satellites at once. A secret without a value keeps
// the stored one. Secrets come back masked.
func (s *Store) SetUserConfiguration(ctx context.Context, uc UserConfiguration, by Author) (UserConfiguration, error) {
	var out UserConfiguration
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		inst, err := q.LockInstallation(ctx, uc.InstallationID, uc.TeamID)
		if err != nil {
			return translate(err, "installation")
		}
		tmpl, err := s.template(ctx, q, uc.TeamID, inst.CatalogEntryID)
		if err != nil {
			return err
		}
		var stored sealedLevel
		prior, err := q.GetUserConfiguration(ctx, uc.InstallationID, uc.TeamID, uc.UserID)
		switch {
		case err == nil:
			stored = sealedLevel{prior.ArgValues, prior.Env, prior.Headers, prior.QueryParams}
		case !errors.Is(err, pgx.ErrNoRows):
			return translate(err, "user configuration")
		}
		has, err := stored.has()
		if err != nil {
			return err
		}
		values := uc.Values()
		team, err := sealedLevel{inst.ArgValues, inst.Env, inst.Headers, inst.QueryParams}.mask()
		if err != nil {
			return err
		}
		if err := tmpl.ConfigSchema.checkLevel(ScopeUserField, values, []Values{tmpl.Values(), team}, has); err != nil {
			return err
		}
		sealed, err := s.sealLevel(stored, values)
		if err != nil {
			return err
		}
		if err := q.UpsertUserConfiguration(ctx, dbsqlc.UpsertUserConfigurationParams{
			InstallationID: uc.InstallationID, TeamID: uc.TeamID, UserID: uc.UserID, Args: nonNil(uc.Args),
			ArgValues: sealed.argValues, Env: sealed.env, Headers: sealed.headers, QueryParams: sealed.query,
		}); err != nil {
			return translate(err, "set user configuration")
		}
		if err := configure(ctx, q, uc.TeamID, EventInstallationUpdated, uc.InstallationID); err != nil {
			return err
		}
		r, err := q.GetUserConfiguration(ctx, uc.InstallationID, uc.TeamID, uc.UserID)
		if err != nil {
			return translate(err, "user configuration")
		}
		action := VersionUpdated
		if prior.UserID == uuid.Nil {
			action = VersionCreated
		}
		subj := Subject{Kind: KindUserConfiguration, ID: uc.InstallationID, TeamID: &uc.TeamID, UserID: uc.UserID}
		if _, err := recordVersion(ctx, q, subj, action, 0, by, snapshotOfUserConfiguration(r)); err != nil {
			return err
		}
		out, err = userConfigurationFromRow(r)
		return err
	})
	return out, err
}

// InstallationSettings are an installation's settings; nil fields are left as they are.
type InstallationSettings struct {
	RequestLoggingEnabled *bool
}

// UpdateInstallationSettings changes the given settings of one of a team's installations and tells the
// team's satellites.
func (s *Store) UpdateInstallationSettings(ctx context.Context, teamID, id uuid.UUID, set InstallationSettings, by Author) (Installation, error) {
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		n, err := q.UpdateInstallationSettings(ctx, set.RequestLoggingEnabled, id, teamID)
		if err := rowsAffected(n, err, "installation"); err != nil {
			return err
		}
		row, err := q.LockInstallation(ctx, id, teamID)
		if err != nil {
			return translate(err, "installation")
		}
		subj := Subject{Kind: KindInstallation, ID: id, TeamID: &teamID}
		if _, err := recordVersion(ctx, q, subj, VersionUpdated, 0, by, snapshotOfInstallation(row)); err != nil {
			return err
		}
		return configure(ctx, q, teamID, EventInstallationUpdated, id)
	})
	if err != nil {
		return Installation{}, err
	}
	return s.GetInstallation(ctx, teamID, id)
}
