package oauth

import (
	"context"
	"errors"
	"net/url"
	"regexp"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// endpointPath is the path of a team's MCP endpoint on a satellite.
var endpointPath = regexp.MustCompile(`^/teams/([a-z0-9][a-z0-9-]{0,62})/mcp$`)

// resource is a team endpoint named by an RFC 8707 resource parameter.
type resource struct {
	// base is the satellite's URL: scheme, host and port.
	base string
	team store.Team
}

// endpoint is the team endpoint URL of team on the same satellite.
func (r resource) endpoint(slug string) string { return r.base + "/teams/" + slug + "/mcp" }

var errUnknownResource = errors.New("unknown resource")

// resolveResource checks that raw names a team endpoint, {satellite_url}/teams/{slug}/mcp, that a live
// satellite serving the team publishes. Every failure is the same error, so the answer reveals nothing
// about which teams or satellites exist.
func (s *Server) resolveResource(ctx context.Context, raw string) (resource, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" {
		return resource{}, errUnknownResource
	}
	m := endpointPath.FindStringSubmatch(u.Path)
	if m == nil {
		return resource{}, errUnknownResource
	}
	team, err := s.store.TeamBySlug(ctx, m[1])
	if errors.Is(err, store.ErrNotFound) {
		return resource{}, errUnknownResource
	}
	if err != nil {
		return resource{}, err
	}
	base := u.Scheme + "://" + u.Host
	served, err := s.endpointServed(ctx, base, team.ID)
	if err != nil {
		return resource{}, err
	}
	if !served {
		return resource{}, errUnknownResource
	}
	return resource{base: base, team: team}, nil
}

// endpointServed reports whether the team's endpoint is under base: the URL of a live satellite that serves
// it, or the pool URL while global satellites serve it.
func (s *Server) endpointServed(ctx context.Context, base string, teamID uuid.UUID) (bool, error) {
	if s.cfg.PoolURL != "" && base == s.cfg.PoolURL {
		_, global, err := s.store.TeamEndpointBases(ctx, teamID)
		return global, err
	}
	return s.store.TeamEndpointServed(ctx, base, teamID)
}
