// Package backendtest runs a fake control plane for the satellite's tests: an in-memory
// SatelliteService served over real HTTP on loopback. It keeps what satellites sent so tests can assert on
// it, validates every request against the proto's protovalidate rules as the real control plane does, and
// can simulate an outage or a revoked satellite.
package backendtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/gen/orrery/satellite/v1/satellitev1connect"
	"github.com/orrery/orrery/internal/peertoken"
)

// maxWait caps a PollCommands hold as the real control plane does.
const maxWait = 25 * time.Second

// Server is the fake control plane. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL satellites dial.
	URL string

	t       testing.TB
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change, so waiters never poll

	tokens        map[string]grant
	keys          map[string]string // API key → satellite id
	revoked       bool
	down          bool
	noHold        bool
	draining      bool
	nextHeartbeat time.Duration
	// ignoreBeats makes PollCommands ignore a carried heartbeat, as a control plane that predates them does.
	ignoreBeats bool
	// beatCalls counts Heartbeat calls; heartbeats also holds the heartbeats polls carried.
	beatCalls int
	// refuseBeats makes PollCommands refuse a poll carrying a heartbeat as invalid; beatRefusals counts them.
	refuseBeats  bool
	beatRefusals int

	registrations []*satellitev1.RegisterRequest
	heartbeats    []*satellitev1.HeartbeatRequest
	queue         []*satellitev1.Command
	polls         int
	reports       []*satellitev1.ReportCommandResultRequest
	etag          string
	instances     []*satellitev1.Instance
	configReqs    []*satellitev1.GetConfigurationRequest
	events        []*satellitev1.Event
	eventIDs      map[string]bool
	emitCalls     int
	refused       int
	registered    []string
	heartbeatIDs  []string
	accessTokens  map[string]*satellitev1.IntrospectTokenResponse
	policies      []*satellitev1.Policy
	archives      map[string][]byte // uploaded source archives by team id and sha256

	// The pool, once EnablePool is called: its URL and signing key, each satellite's own instances,
	// who drains, and where each team is placed.
	poolURL     string
	poolKey     ed25519.PrivateKey
	perSat      map[string][]*satellitev1.Instance
	drainingIDs map[string]bool
	placements  map[string][]string // team slug → satellite ids
	configSent  map[string][]*satellitev1.GetConfigurationResponse
	satQueues   map[string]*[]*satellitev1.Command
}

// queueLocked is the command queue a satellite polls: its own in a pool, else the shared one.
func (s *Server) queueLocked(satelliteID string) *[]*satellitev1.Command {
	if s.poolKey == nil {
		return &s.queue
	}
	q := s.satQueues[satelliteID]
	if q == nil {
		q = new([]*satellitev1.Command)
		s.satQueues[satelliteID] = q
	}
	return q
}

// Reconfigure sends every satellite of the pool a configure command, so it fetches its configuration.
func (s *Server) Reconfigure() {
	s.update(func() {
		for _, id := range s.registered {
			q := s.queueLocked(id)
			*q = append(*q, &satellitev1.Command{Id: uuid.NewString(), Action: &satellitev1.Command_Configure{
				Configure: &satellitev1.ConfigureAction{Event: satellitev1.ConfigureEvent_CONFIGURE_EVENT_INSTALLATION_UPDATED}}})
		}
	})
}

type satelliteIDKey struct{}

func satelliteIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(satelliteIDKey{}).(string)
	return id
}

// EnablePool makes every global satellite a member of one pool with the public URL url: configurations
// carry the pool, GetPeerCredential issues credentials, and IntrospectToken places teams (SetPlacement).
func (s *Server) EnablePool(url string) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	s.update(func() {
		s.poolURL, s.poolKey = url, key
		s.perSat, s.drainingIDs, s.placements = map[string][]*satellitev1.Instance{}, map[string]bool{}, map[string][]string{}
		s.configSent = map[string][]*satellitev1.GetConfigurationResponse{}
		s.satQueues = map[string]*[]*satellitev1.Command{}
	})
}

// SetSatelliteConfiguration gives one satellite of the pool its own instances, in place of SetConfiguration's.
func (s *Server) SetSatelliteConfiguration(satelliteID string, instances ...*satellitev1.Instance) {
	s.update(func() { s.perSat[satelliteID] = instances; s.etag += "+" })
}

// SetPoolDraining drains a satellite of the pool, or ends its draining.
func (s *Server) SetPoolDraining(satelliteID string, draining bool) {
	s.update(func() { s.drainingIDs[satelliteID] = draining; s.etag += "+" })
}

// SetPlacement places a team on satellites: introspecting its tokens at any other satellite answers with
// the placement and a signed forwarded identity.
func (s *Server) SetPlacement(teamSlug string, satelliteIDs ...string) {
	s.update(func() { s.placements[teamSlug] = satelliteIDs })
}

// SatelliteIDs returns the ids of the satellites registered so far, in registration order.
func (s *Server) SatelliteIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.registered)
}

// HeartbeatSenders returns the satellite id of each heartbeat, in the order of Heartbeats.
func (s *Server) HeartbeatSenders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.heartbeatIDs)
}

// ConfigurationsSent returns the configurations sent to a satellite of the pool.
func (s *Server) ConfigurationsSent(satelliteID string) []*satellitev1.GetConfigurationResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.configSent[satelliteID])
}

// peersLocked lists the satellites of the pool that reported an internal URL, by id.
func (s *Server) peersLocked() []*satellitev1.Peer {
	urls := map[string]string{}
	for i, hb := range s.heartbeats {
		if id := s.heartbeatIDs[i]; hb.GetInternalUrl() != "" {
			urls[id] = hb.GetInternalUrl()
		}
	}
	var peers []*satellitev1.Peer
	for id, u := range urls {
		peers = append(peers, &satellitev1.Peer{SatelliteId: id, InternalUrl: u, Draining: s.drainingIDs[id]})
	}
	slices.SortFunc(peers, func(a, b *satellitev1.Peer) int { return strings.Compare(a.GetSatelliteId(), b.GetSatelliteId()) })
	return peers
}

type grant struct {
	typ    satellitev1.SatelliteType
	teamID string
}

// New starts a fake control plane that stops when the test ends.
func New(t testing.TB) *Server {
	s := &Server{
		t:        t,
		changed:  make(chan struct{}),
		tokens:   make(map[string]grant),
		keys:     make(map[string]string),
		eventIDs: make(map[string]bool),

		accessTokens: make(map[string]*satellitev1.IntrospectTokenResponse),
	}
	mux := http.NewServeMux()
	mux.Handle(satellitev1connect.NewSatelliteServiceHandler(s, connect.WithInterceptors(s.interceptor())))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// AddToken makes token a valid, single-use registration token granting typ (and teamID for team tokens).
func (s *Server) AddToken(token string, typ satellitev1.SatelliteType, teamID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = grant{typ: typ, teamID: teamID}
}

// AddSatellite registers a satellite directly and returns its API key, for tests that need an
// authenticated client without going through Register.
func (s *Server) AddSatellite() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := newKey()
	s.keys[key] = uuid.NewString()
	return key
}

// SetDown makes every RPC fail with Unavailable until it is called with false.
func (s *Server) SetDown(down bool) {
	s.update(func() { s.down = down })
}

// Revoke refuses every API key issued so far, as the control plane does once an administrator revokes or
// deletes a satellite.
func (s *Server) Revoke() {
	s.update(func() { s.revoked = true })
}

// SetHold sets whether PollCommands holds an empty poll open, as the real control plane does, or answers
// at once, as a control plane that cannot long-poll would.
func (s *Server) SetHold(hold bool) {
	s.update(func() { s.noHold = !hold })
}

// SetDraining sets whether PollCommands answers empty polls at once saying the replica is shutting down,
// as a real replica does once it drains.
func (s *Server) SetDraining(draining bool) {
	s.update(func() { s.draining = draining })
}

// SetNextHeartbeat sets the interval heartbeat responses ask for; zero leaves it out.
func (s *Server) SetNextHeartbeat(d time.Duration) {
	s.update(func() { s.nextHeartbeat = d })
}

// SetPollHeartbeats sets whether PollCommands records the heartbeat a poll carries and answers it, as the
// real control plane does, or ignores it, as one that predates heartbeats on polls would. Default true.
func (s *Server) SetPollHeartbeats(record bool) {
	s.update(func() { s.ignoreBeats = !record })
}

// SetRefusePollHeartbeats sets whether PollCommands refuses a poll that carries a heartbeat as an invalid
// argument, as the control plane refuses a heartbeat it will not take.
func (s *Server) SetRefusePollHeartbeats(refuse bool) {
	s.update(func() { s.refuseBeats = refuse })
}

// PollHeartbeatRefusals counts the polls refused for the heartbeat they carried.
func (s *Server) PollHeartbeatRefusals() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.beatRefusals
}

// HeartbeatCalls counts the Heartbeat calls received; Heartbeats also lists heartbeats that polls carried.
func (s *Server) HeartbeatCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.beatCalls
}

// SetConfiguration sets the configuration GetConfiguration returns.
func (s *Server) SetConfiguration(etag string, instances ...*satellitev1.Instance) {
	s.update(func() { s.etag, s.instances = etag, instances })
}

// SetPolicies sets the policies GetConfiguration returns beside the instances.
func (s *Server) SetPolicies(policies ...*satellitev1.Policy) {
	s.update(func() { s.policies = policies })
}

// Enqueue makes cmds due. Enqueuing a command id again redelivers it, as a lease running out would.
func (s *Server) Enqueue(cmds ...*satellitev1.Command) {
	s.update(func() { s.queue = append(s.queue, cmds...) })
}

// Registrations returns the Register requests that succeeded.
func (s *Server) Registrations() []*satellitev1.RegisterRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.registrations)
}

// Heartbeats returns the heartbeats received, oldest first.
func (s *Server) Heartbeats() []*satellitev1.HeartbeatRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.heartbeats)
}

// Reports returns the command results received, oldest first, duplicates included.
func (s *Server) Reports() []*satellitev1.ReportCommandResultRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reports)
}

// ConfigRequests returns the GetConfiguration requests received, oldest first.
func (s *Server) ConfigRequests() []*satellitev1.GetConfigurationRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.configReqs)
}

// Polls counts the PollCommands calls answered.
func (s *Server) Polls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.polls
}

// Events returns the events stored, each id once, in the order they arrived.
func (s *Server) Events() []*satellitev1.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

// EmitCalls counts the EmitEvents calls that stored their batch.
func (s *Server) EmitCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.emitCalls
}

// Refused counts the calls failed with Unavailable while the server was down.
func (s *Server) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// Wait blocks until cond holds, re-checking it after every change to the server's state, and fails the
// test if that takes longer than timeout.
func (s *Server) Wait(ctx context.Context, what string, timeout time.Duration, cond func() bool) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			s.t.Fatalf("waiting for %s: %v", what, ctx.Err())
		}
	}
}

func (s *Server) update(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
	s.changedLocked()
}

func (s *Server) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// interceptor does what the real control plane does before a handler runs: fail when down, validate the
// request, and authenticate every RPC but Register.
func (s *Server) interceptor() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			s.mu.Lock()
			down, revoked := s.down, s.revoked
			satID, known := s.keys[strings.TrimPrefix(req.Header().Get("Authorization"), "Bearer ")]
			s.mu.Unlock()
			ctx = context.WithValue(ctx, satelliteIDKey{}, satID)
			if down {
				s.update(func() { s.refused++ })
				return nil, connect.NewError(connect.CodeUnavailable, errors.New("control plane is down"))
			}
			if msg, ok := req.Any().(proto.Message); ok {
				if err := protovalidate.Validate(msg); err != nil {
					s.t.Errorf("%s: invalid request: %v", req.Spec().Procedure, err)
					return nil, connect.NewError(connect.CodeInvalidArgument, err)
				}
			}
			if req.Spec().Procedure != satellitev1connect.SatelliteServiceRegisterProcedure && (!known || revoked) {
				return nil, connect.NewError(connect.CodeUnauthenticated,
					errors.New("this satellite was revoked: register it again with a new registration token"))
			}
			return next(ctx, req)
		}
	}
}

// Register implements SatelliteServiceHandler.
func (s *Server) Register(_ context.Context, req *connect.Request[satellitev1.RegisterRequest]) (*connect.Response[satellitev1.RegisterResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.tokens[req.Msg.GetRegistrationToken()]
	if !ok {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("registration token is invalid or used"))
	}
	delete(s.tokens, req.Msg.GetRegistrationToken())
	key := newKey()
	id := uuid.NewString()
	s.keys[key] = id
	s.registered = append(s.registered, id)
	s.registrations = append(s.registrations, req.Msg)
	s.changedLocked()
	return connect.NewResponse(&satellitev1.RegisterResponse{SatelliteId: id, ApiKey: key, Type: g.typ, TeamId: g.teamID}), nil
}

// Heartbeat implements SatelliteServiceHandler.
func (s *Server) Heartbeat(ctx context.Context, req *connect.Request[satellitev1.HeartbeatRequest]) (*connect.Response[satellitev1.HeartbeatResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.beatCalls++
	return connect.NewResponse(s.recordHeartbeatLocked(satelliteIDFrom(ctx), req.Msg)), nil
}

func (s *Server) recordHeartbeatLocked(satelliteID string, hb *satellitev1.HeartbeatRequest) *satellitev1.HeartbeatResponse {
	s.heartbeats = append(s.heartbeats, hb)
	s.heartbeatIDs = append(s.heartbeatIDs, satelliteID)
	s.changedLocked()
	resp := &satellitev1.HeartbeatResponse{Status: satellitev1.SatelliteStatus_SATELLITE_STATUS_ACTIVE,
		PollsCarryHeartbeats: !s.ignoreBeats}
	if s.nextHeartbeat > 0 {
		resp.NextHeartbeat = durationpb.New(s.nextHeartbeat)
	}
	return resp
}

// PollCommands implements SatelliteServiceHandler. It long-polls like the real control plane: with nothing
// due it holds the call until a command is enqueued or the requested wait ends.
func (s *Server) PollCommands(ctx context.Context, req *connect.Request[satellitev1.PollCommandsRequest]) (*connect.Response[satellitev1.PollCommandsResponse], error) {
	timer := time.NewTimer(min(req.Msg.GetWait().AsDuration(), maxWait))
	defer timer.Stop()
	limit := int(req.Msg.GetMaxCommands())
	if limit == 0 {
		limit = 100
	}
	var beat *satellitev1.HeartbeatResponse
	s.mu.Lock()
	if req.Msg.GetHeartbeat() != nil && s.refuseBeats {
		s.beatRefusals++
		s.mu.Unlock()
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("heartbeat: invalid process report"))
	}
	if hb := req.Msg.GetHeartbeat(); hb != nil && !s.ignoreBeats && !s.down {
		beat = s.recordHeartbeatLocked(satelliteIDFrom(ctx), hb)
	}
	s.mu.Unlock()
	for {
		s.mu.Lock()
		if s.down {
			// A control plane going down drops the calls it holds.
			s.refused++
			s.changedLocked()
			s.mu.Unlock()
			return nil, connect.NewError(connect.CodeUnavailable, errors.New("control plane is down"))
		}
		queue := s.queueLocked(satelliteIDFrom(ctx))
		if len(*queue) > 0 || s.noHold || s.draining {
			n := min(len(*queue), limit)
			resp := &satellitev1.PollCommandsResponse{Commands: slices.Clone((*queue)[:n]), Heartbeat: beat}
			if n == 0 && s.draining {
				resp.ReplicaDraining, resp.NextPoll = true, durationpb.New(2*time.Second)
			}
			*queue = slices.Delete(*queue, 0, n)
			s.polls++
			s.changedLocked()
			s.mu.Unlock()
			return connect.NewResponse(resp), nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, connect.NewError(connect.CodeCanceled, ctx.Err())
		case <-timer.C:
			s.update(func() { s.polls++ })
			return connect.NewResponse(&satellitev1.PollCommandsResponse{NextPoll: durationpb.New(30 * time.Second), Heartbeat: beat}), nil
		}
	}
}

// ReportCommandResult implements SatelliteServiceHandler.
func (s *Server) ReportCommandResult(_ context.Context, req *connect.Request[satellitev1.ReportCommandResultRequest]) (*connect.Response[satellitev1.ReportCommandResultResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reports = append(s.reports, req.Msg)
	s.changedLocked()
	state := satellitev1.CommandState_COMMAND_STATE_COMPLETED
	if req.Msg.GetResult() == satellitev1.CommandResult_COMMAND_RESULT_FAILED {
		state = satellitev1.CommandState_COMMAND_STATE_FAILED
	}
	return connect.NewResponse(&satellitev1.ReportCommandResultResponse{State: state}), nil
}

// GetConfiguration implements SatelliteServiceHandler.
func (s *Server) GetConfiguration(ctx context.Context, req *connect.Request[satellitev1.GetConfigurationRequest]) (*connect.Response[satellitev1.GetConfigurationResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.configReqs = append(s.configReqs, req.Msg)
	s.changedLocked()
	if s.poolKey != nil {
		// Each satellite its own instances, and the pool; the etag changes with either, and with the
		// peers, so the configuration is sent whole every time.
		id := satelliteIDFrom(ctx)
		resp := &satellitev1.GetConfigurationResponse{Etag: s.etag + "-" + id, Instances: s.perSat[id], Policies: s.policies,
			Pool: &satellitev1.Pool{Url: s.poolURL, Draining: s.drainingIDs[id], Peers: s.peersLocked()}}
		s.configSent[id] = append(s.configSent[id], resp)
		return connect.NewResponse(resp), nil
	}
	if req.Msg.GetIfNoneMatch() != "" && req.Msg.GetIfNoneMatch() == s.etag {
		return connect.NewResponse(&satellitev1.GetConfigurationResponse{Etag: s.etag, NotModified: true}), nil
	}
	return connect.NewResponse(&satellitev1.GetConfigurationResponse{Etag: s.etag, Instances: s.instances, Policies: s.policies}), nil
}

// SetSourceArchive makes content the archive teamID uploaded with the SHA-256 digest.
func (s *Server) SetSourceArchive(teamID, digest string, content []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.archives == nil {
		s.archives = make(map[string][]byte)
	}
	s.archives[teamID+"/"+digest] = content
}

// GetSourceArchive implements SatelliteServiceHandler with the archives SetSourceArchive set.
func (s *Server) GetSourceArchive(_ context.Context, req *connect.Request[satellitev1.GetSourceArchiveRequest]) (*connect.Response[satellitev1.GetSourceArchiveResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	content, ok := s.archives[req.Msg.GetTeamId()+"/"+req.Msg.GetSha256()]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("no such source archive"))
	}
	return connect.NewResponse(&satellitev1.GetSourceArchiveResponse{Content: content}), nil
}

// EmitEvents implements SatelliteServiceHandler. Like the real control plane it stores each event id once.
func (s *Server) EmitEvents(_ context.Context, req *connect.Request[satellitev1.EmitEventsRequest]) (*connect.Response[satellitev1.EmitEventsResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var resp satellitev1.EmitEventsResponse
	for _, ev := range req.Msg.GetEvents() {
		if s.eventIDs[ev.GetId()] {
			resp.Duplicates++
			continue
		}
		s.eventIDs[ev.GetId()] = true
		s.events = append(s.events, ev)
		resp.Stored++
	}
	s.emitCalls++
	s.changedLocked()
	return connect.NewResponse(&resp), nil
}

func newKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "orsat_" + hex.EncodeToString(b)
}

// SetAccessToken makes IntrospectToken answer info for token, an MCP client's access token.
func (s *Server) SetAccessToken(token string, info *satellitev1.IntrospectTokenResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accessTokens[token] = info
}

// IntrospectToken answers what SetAccessToken set for the token, and reports every other token inactive.
func (s *Server) IntrospectToken(ctx context.Context, req *connect.Request[satellitev1.IntrospectTokenRequest]) (*connect.Response[satellitev1.IntrospectTokenResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if info, ok := s.accessTokens[req.Msg.GetToken()]; ok {
		placed := s.placements[info.GetTeamSlug()]
		if s.poolKey == nil || !info.GetActive() || len(placed) == 0 || slices.Contains(placed, satelliteIDFrom(ctx)) {
			return connect.NewResponse(info), nil
		}
		peers := map[string]*satellitev1.Peer{}
		for _, p := range s.peersLocked() {
			peers[p.GetSatelliteId()] = p
		}
		resp := proto.Clone(info).(*satellitev1.IntrospectTokenResponse)
		for _, id := range placed {
			if p := peers[id]; p != nil {
				resp.Placement = append(resp.Placement, p)
			}
		}
		identity := proto.Clone(info).(*satellitev1.IntrospectTokenResponse)
		if exp := time.Now().Add(2 * time.Minute); identity.GetExpiresAt() == nil || identity.GetExpiresAt().AsTime().After(exp) {
			identity.ExpiresAt = timestamppb.New(exp)
		}
		token, err := peertoken.Sign(s.poolKey, peertoken.ForwardedIdentity, identity)
		if err != nil {
			return nil, connect.NewError(connect.CodeInternal, err)
		}
		resp.ForwardedIdentity = token
		return connect.NewResponse(resp), nil
	}
	return connect.NewResponse(&satellitev1.IntrospectTokenResponse{}), nil
}

// GetPeerCredential issues a credential for a minute once EnablePool is called, and answers as a control
// plane without satellite pools does before.
func (s *Server) GetPeerCredential(ctx context.Context, _ *connect.Request[satellitev1.GetPeerCredentialRequest]) (*connect.Response[satellitev1.GetPeerCredentialResponse], error) {
	s.mu.Lock()
	key := s.poolKey
	s.mu.Unlock()
	if key == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("satellite pools are not served"))
	}
	expires := timestamppb.New(time.Now().Add(time.Minute))
	token, err := peertoken.Sign(key, peertoken.PeerCredential, &satellitev1.PeerCredential{SatelliteId: satelliteIDFrom(ctx), ExpiresAt: expires})
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewResponse(&satellitev1.GetPeerCredentialResponse{
		Credential: token, ExpiresAt: expires, VerificationKeys: [][]byte{key.Public().(ed25519.PublicKey)},
	}), nil
}

// DownloadRelease serves no releases: self-update is tested end to end against a real control plane.
func (s *Server) DownloadRelease(context.Context, *connect.Request[satellitev1.DownloadReleaseRequest]) (*connect.Response[satellitev1.DownloadReleaseResponse], error) {
	return nil, connect.NewError(connect.CodeNotFound, errors.New("no releases"))
}
