package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/spf13/cobra"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
)

// satelliteStatus is a satellite's status as the list shows it, with where a drain stands.
func satelliteStatus(st *adminv1.Satellite) string {
	status := enumName(st.GetStatus().String(), "SATELLITE_STATUS_")
	switch {
	case st.GetDrainedAt() != nil:
		return status + ", drained"
	case st.GetDrainingAt() != nil:
		return fmt.Sprintf("%s, draining (%d open sessions)", status, st.GetOpenSessions())
	}
	return status
}

// satelliteRef resolves a global satellite's id or name.
func (s *session) satelliteRef(ctx context.Context, ref string) (*adminv1.Satellite, error) {
	req := &adminv1.ListSatellitesRequest{PageSize: 500}
	for {
		resp, err := s.admin().ListSatellites(ctx, connect.NewRequest(req))
		if err != nil {
			return nil, err
		}
		for _, st := range resp.Msg.GetSatellites() {
			if st.GetId() == ref || st.GetName() == ref {
				return st, nil
			}
		}
		if req.PageToken = resp.Msg.GetNextPageToken(); req.PageToken == "" {
			return nil, fmt.Errorf("no global satellite named %q: see orreryctl satellites list", ref)
		}
	}
}

func (a *App) drainCommands() []*cobra.Command {
	action := func(use, short string, call func(context.Context, *session, string) (*adminv1.Satellite, error), done string) *cobra.Command {
		return &cobra.Command{
			Use:   use + " SATELLITE",
			Short: short,
			Args:  args(cobra.ExactArgs(1)),
			RunE: func(c *cobra.Command, argv []string) error {
				s, err := a.session(c.Context())
				if err != nil {
					return err
				}
				st, err := s.satelliteRef(c.Context(), argv[0])
				if err != nil {
					return err
				}
				st, err = call(c.Context(), s, st.GetId())
				if err != nil {
					return err
				}
				fmt.Fprintf(a.Err, done+"\n", st.GetName())
				return a.show(st, []string{"NAME", "STATUS", "ID"}, [][]string{{st.GetName(), satelliteStatus(st), st.GetId()}})
			},
		}
	}
	drain := action("drain", "Move a global satellite's teams to others; its open sessions finish there (global admins)",
		func(ctx context.Context, s *session, id string) (*adminv1.Satellite, error) {
			return satelliteOf(s.admin().DrainSatellite(ctx, connect.NewRequest(&adminv1.DrainSatelliteRequest{Id: id})))
		}, "%s is draining: new sessions go to other satellites; it is drained once its open sessions end.")
	undrain := action("undrain", "Let a drained or draining global satellite take teams again (global admins)",
		func(ctx context.Context, s *session, id string) (*adminv1.Satellite, error) {
			return satelliteOf(s.admin().UndrainSatellite(ctx, connect.NewRequest(&adminv1.UndrainSatelliteRequest{Id: id})))
		}, "%s takes teams again.")
	revoke := action("revoke", "Revoke a global satellite's key: it is refused at once and its teams move (global admins)",
		func(ctx context.Context, s *session, id string) (*adminv1.Satellite, error) {
			return satelliteOf(s.admin().RevokeSatellite(ctx, connect.NewRequest(&adminv1.RevokeSatelliteRequest{Id: id})))
		}, "%s is revoked; register it again with a new registration token to bring it back.")
	return []*cobra.Command{drain, undrain, revoke, a.placementsCommand()}
}

func (a *App) placementsCommand() *cobra.Command {
	var team, satellite string
	var replicas int
	c := &cobra.Command{
		Use:   "placements",
		Short: "Which global satellites serve a team (--team), or which teams a satellite serves (--satellite)",
		Example: `  orreryctl satellites placements --team acme
  orreryctl satellites placements --team acme --replicas 3   # serve acme from three satellites
  orreryctl satellites placements --satellite edge-1`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if (team == "") == (satellite == "") {
				return usageError{errors.New("name exactly one of --team or --satellite")}
			}
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			if satellite != "" {
				if c.Flags().Changed("replicas") {
					return usageError{errors.New("--replicas sets a team's; name the team with --team")}
				}
				return a.satellitePlacements(c.Context(), s, satellite)
			}
			t, err := s.team(c.Context(), team)
			if err != nil {
				return err
			}
			if c.Flags().Changed("replicas") {
				if replicas < 0 || replicas > 16 {
					return usageError{errors.New("--replicas is from 1 to 16, or 0 for the default")}
				}
				if _, err := s.admin().SetTeamReplicas(c.Context(), connect.NewRequest(&adminv1.SetTeamReplicasRequest{
					TeamId: t.GetId(), Replicas: uint32(replicas),
				})); err != nil {
					return err
				}
			}
			resp, err := s.admin().ListPlacements(c.Context(), connect.NewRequest(&adminv1.ListPlacementsRequest{
				Target: &adminv1.ListPlacementsRequest_TeamId{TeamId: t.GetId()},
			}))
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Err, "%s is served by %d of the %d global satellites it should have.\n", t.GetSlug(),
				len(resp.Msg.GetPlacements()), resp.Msg.GetReplicas())
			var rows [][]string
			for _, p := range resp.Msg.GetPlacements() {
				live := "no"
				if p.GetLive() {
					live = "yes"
				}
				rows = append(rows, []string{strconv.Itoa(int(p.GetRank())), p.GetSatelliteName(), live, ago(p.GetPlacedAt()), p.GetSatelliteId()})
			}
			return a.show(resp.Msg, []string{"RANK", "SATELLITE", "LIVE", "PLACED", "ID"}, rows)
		},
	}
	c.Flags().StringVar(&team, "team", "", "the team (slug or id)")
	c.Flags().StringVar(&satellite, "satellite", "", "the global satellite (name or id)")
	c.Flags().IntVar(&replicas, "replicas", 0, "with --team, set how many global satellites serve the team (0: the default)")
	return c
}

func (a *App) satellitePlacements(ctx context.Context, s *session, ref string) error {
	id := ref
	if _, err := uuid.Parse(ref); err != nil {
		st, err := s.satelliteRef(ctx, ref)
		if err != nil {
			return err
		}
		id = st.GetId()
	}
	all := &adminv1.ListPlacementsResponse{}
	req := &adminv1.ListPlacementsRequest{Target: &adminv1.ListPlacementsRequest_SatelliteId{SatelliteId: id}, PageSize: 500}
	for {
		resp, err := s.admin().ListPlacements(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		all.Placements = append(all.Placements, resp.Msg.GetPlacements()...)
		if req.PageToken = resp.Msg.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	var rows [][]string
	for _, p := range all.GetPlacements() {
		rows = append(rows, []string{p.GetTeamSlug(), strconv.Itoa(int(p.GetRank())), ago(p.GetPlacedAt()), p.GetTeamId()})
	}
	return a.show(all, []string{"TEAM", "RANK", "PLACED", "TEAM ID"}, rows)
}

// satelliteOf is the satellite a drain, undrain or revocation answered with.
func satelliteOf[R any, P interface {
	*R
	GetSatellite() *adminv1.Satellite
}](resp *connect.Response[R], err error) (*adminv1.Satellite, error) {
	if err != nil {
		return nil, err
	}
	return P(resp.Msg).GetSatellite(), nil
}
