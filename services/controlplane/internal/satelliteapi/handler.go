// Package satelliteapi serves orrery.satellite.v1.SatelliteService: registration, heartbeats, command
// long-polling and results, configuration and events.
package satelliteapi

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/peertoken"
	"github.com/orrery/orrery/internal/policy"
	"github.com/orrery/orrery/services/controlplane/internal/apikey"
	"github.com/orrery/orrery/services/controlplane/internal/bearer"
	"github.com/orrery/orrery/services/controlplane/internal/command"
	"github.com/orrery/orrery/services/controlplane/internal/notify"
	"github.com/orrery/orrery/services/controlplane/internal/regtoken"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Config configures a Handler. Zero durations take the defaults named on each field.
type Config struct {
	// HeartbeatInterval is how often satellites send heartbeats; three missed intervals make a satellite
	// offline. Default 30 s.
	HeartbeatInterval time.Duration
	// MaxPollWait caps how long PollCommands holds a call open. Default 25 s, below common proxy timeouts.
	MaxPollWait time.Duration
	// CommandLease is how long a delivered command waits for its result before it is delivered again.
	// Default 60 s.
	CommandLease time.Duration
	// KeyCacheTTL is how long a verified API key skips Argon2 after its last use. Default 5 min.
	KeyCacheTTL time.Duration
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// AccountLink is the page where the user of an instance connects their account at its remote server
	// (remoteauth.Connector.Link). Default: no link is given.
	AccountLink func(teamID, installationID uuid.UUID) string
	// Alerts hears of instances that failed for good and credential checks that started failing. Default
	// nil: no alerts.
	Alerts Alerter
	// PoolURL is the public URL the global satellites share behind a load balancer. Default empty: each
	// global satellite is reached on its own URL and none forwards.
	PoolURL string
	// PeerKeys sign peer credentials and forwarded identities, the first signs and all verify (several
	// while keys rotate). Default none: GetPeerCredential is refused and introspection carries no identity.
	PeerKeys []ed25519.PrivateKey
	// PeerCredentialTTL is how long a peer credential is accepted. Default 10 min.
	PeerCredentialTTL time.Duration
	// Placement recomputes the placement after the heartbeats that may change it: a satellite's first, its
	// return after the grace period, a change of its capacity or internal URL, and a draining satellite's
	// last open session ending. These are rare, so the heartbeat waits for it, and the satellite's next
	// configuration fetch sees its teams. Default nil: placement is left to its periodic run.
	Placement Placer
	// PlacementGrace is how long a satellite may go unheard before its teams move; a satellite heard after
	// a longer silence has returned. Default three heartbeat intervals.
	PlacementGrace time.Duration
}

// Placer recomputes the placement of teams on global satellites.
type Placer interface {
	Recompute(ctx context.Context) (store.PlacementResult, error)
}

// forwardedIdentityTTL bounds how long a forwarded identity is accepted, whatever the token's expiry.
const forwardedIdentityTTL = 5 * time.Minute

// Alerter raises alerts about what satellites report. It believes a satellite only about instances of the
// teams it serves, and never fails the report: the report is stored whatever becomes of the alert.
type Alerter interface {
	InstancesFailed(ctx context.Context, sat store.Satellite, events []store.Event)
	CredentialChecksFailed(ctx context.Context, sat store.Satellite, cmd store.Command)
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 30 * time.Second
	}
	if c.MaxPollWait == 0 {
		c.MaxPollWait = 25 * time.Second
	}
	if c.CommandLease == 0 {
		c.CommandLease = 60 * time.Second
	}
	if c.KeyCacheTTL == 0 {
		c.KeyCacheTTL = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.PeerCredentialTTL == 0 {
		c.PeerCredentialTTL = 10 * time.Minute
	}
	if c.PlacementGrace == 0 {
		c.PlacementGrace = 3 * c.HeartbeatInterval
	}
	return c
}

// Handler implements satellitev1connect.SatelliteServiceHandler.
type Handler struct {
	logger *slog.Logger
	store  *store.Store
	signer *regtoken.Signer
	hub    *notify.Hub
	keys   *apikey.Cache
	// lastRead holds each key's satellite as last read, for the heartbeat's single round trip.
	lastRead *expirable.LRU[string, store.Satellite]
	beats    heldBeats
	cfg      Config

	drainOnce sync.Once
	draining  chan struct{}
}

// New returns a Handler. hub wakes long polls when commands are created on any replica.
func New(logger *slog.Logger, st *store.Store, signer *regtoken.Signer, hub *notify.Hub, cfg Config) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.WithDefaults()
	return &Handler{
		logger: logger, store: st, signer: signer, hub: hub, cfg: cfg,
		keys:     apikey.NewCache(100_000, cfg.KeyCacheTTL),
		lastRead: expirable.NewLRU[string, store.Satellite](100_000, nil, cfg.KeyCacheTTL),
		draining: make(chan struct{}),
	}
}

// Interceptor authenticates satellites; install it on the service's handler.
func (h *Handler) Interceptor() connect.Interceptor { return h.authInterceptor() }

// Argon2Runs counts API-key verifications that needed Argon2 because the key cache could not answer.
func (h *Handler) Argon2Runs() int64 { return h.keys.Argon2Runs() }

// Drain makes open and future long polls answer at once, so a shutting-down replica finishes its in-flight
// polls promptly and satellites re-poll elsewhere.
func (h *Handler) Drain() { h.drainOnce.Do(func() { close(h.draining) }) }

// Register exchanges a registration token for a satellite identity.
func (h *Handler) Register(ctx context.Context, req *connect.Request[satellitev1.RegisterRequest]) (*connect.Response[satellitev1.RegisterResponse], error) {
	var claims regtoken.Claims
	refuse := func(code connect.Code, reason string, tokenID uuid.UUID) error {
		h.logger.WarnContext(ctx, "satellite registration refused", "security_event", "registration_refused",
			"reason", reason, "token_id", tokenID, "satellite_name", req.Msg.Name, "peer", req.Peer().Addr)
		h.audit(ctx, store.AuditEvent{Actor: "anonymous", TeamID: claims.TeamID, Action: "satellite.registration_refused",
			Target: tokenID.String(), Details: map[string]string{"reason": reason, "name": req.Msg.Name, "peer": req.Peer().Addr}})
		return connect.NewError(code, errors.New(reason))
	}
	claims, err := h.signer.Verify(req.Msg.RegistrationToken, h.cfg.Now())
	switch {
	case errors.Is(err, regtoken.ErrExpired):
		return nil, refuse(connect.CodePermissionDenied,
			"registration token has expired: ask an administrator for a new one", claims.ID)
	case err != nil:
		return nil, refuse(connect.CodeUnauthenticated,
			"registration token is not valid: copy it again exactly, or ask an administrator for a new one", uuid.Nil)
	}
	key, err := apikey.New()
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "register satellite", err)
	}
	sat, err := h.store.RegisterSatellite(ctx, claims.ID, store.NewSatellite{
		Name: req.Msg.Name, Version: req.Msg.Version, APIKeyID: key.ID,
		HashAPIKey: func(ctx context.Context) (string, error) { return apikey.Hash(ctx, key) },
	})
	switch {
	case errors.Is(err, store.ErrTokenConsumed):
		return nil, refuse(connect.CodePermissionDenied,
			"registration token was already used: each token registers one satellite, ask an administrator for a new one", claims.ID)
	case errors.Is(err, store.ErrTokenRevoked):
		return nil, refuse(connect.CodePermissionDenied,
			"registration token was revoked: ask an administrator for a new one", claims.ID)
	case errors.Is(err, store.ErrTokenExpired):
		return nil, refuse(connect.CodePermissionDenied,
			"registration token has expired: ask an administrator for a new one", claims.ID)
	case errors.Is(err, store.ErrNotFound):
		return nil, refuse(connect.CodeUnauthenticated,
			"registration token is unknown to this control plane: ask an administrator for a new one", claims.ID)
	case errors.Is(err, store.ErrAlreadyExists):
		return nil, connect.NewError(connect.CodeAlreadyExists,
			errors.New("a satellite named "+req.Msg.Name+" is already registered: choose another name"))
	case err != nil:
		return nil, rpcerr.From(ctx, h.logger, "register satellite", err)
	}
	// Its first heartbeat needs no Argon2 run of its own: the hash was made from this very key.
	h.keys.Remember(key, sat.APIKeyHash)
	h.logger.InfoContext(ctx, "satellite registered", "satellite_id", sat.ID, "satellite_name", sat.Name,
		"type", sat.Type, "team_id", sat.TeamID)
	h.audit(ctx, store.AuditEvent{Actor: "satellite:" + sat.ID.String(), TeamID: sat.TeamID, Action: "satellite.registered",
		Target: sat.ID.String(), Details: map[string]string{"name": sat.Name, "token_id": claims.ID.String()}})
	resp := &satellitev1.RegisterResponse{
		SatelliteId: sat.ID.String(), ApiKey: key.String(), Type: scopeToProto(sat.Type),
	}
	if sat.TeamID != nil {
		resp.TeamId = sat.TeamID.String()
	}
	return connect.NewResponse(resp), nil
}

func scopeToProto(s store.Scope) satellitev1.SatelliteType {
	if s == store.ScopeTeam {
		return satellitev1.SatelliteType_SATELLITE_TYPE_TEAM
	}
	return satellitev1.SatelliteType_SATELLITE_TYPE_GLOBAL
}

// StatusToProto converts a satellite status.
func StatusToProto(s store.SatelliteStatus) satellitev1.SatelliteStatus {
	return satellitev1.SatelliteStatus(satellitev1.SatelliteStatus_value["SATELLITE_STATUS_"+strings.ToUpper(string(s))])
}

// OfflineAfter is how long a satellite may stay silent before it shows offline: three heartbeat intervals.
func (h *Handler) OfflineAfter() time.Duration { return 3 * h.cfg.HeartbeatInterval }

// Heartbeat records a satellite's health and activates a new satellite.
func (h *Handler) Heartbeat(ctx context.Context, req *connect.Request[satellitev1.HeartbeatRequest]) (*connect.Response[satellitev1.HeartbeatResponse], error) {
	resp, err := h.recordHeartbeat(ctx, satelliteFrom(ctx), req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

// recordHeartbeat records a heartbeat sent on its own or carried by a poll.
func (h *Handler) recordHeartbeat(ctx context.Context, sat store.Satellite, req *satellitev1.HeartbeatRequest) (*satellitev1.HeartbeatResponse, error) {
	hb, foreign := heartbeatFromProto(req, sat)
	if foreign > 0 {
		h.logger.WarnContext(ctx, "heartbeat reported processes of teams this satellite does not serve",
			"security_event", "foreign_processes", "satellite_id", sat.ID, "count", foreign)
	}
	if hb.SystemMetrics == nil {
		// Valid by its rules yet not encodable, such as an uptime past what JSON durations hold: refused
		// here, it can fail no other satellite's heartbeat stored beside it.
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("system: the metrics cannot be stored; check that uptime is a duration of at most 10,000 years"))
	}
	now := h.cfg.Now()
	if h.mayHold(sat, hb, now) {
		h.beats.hold(sat.APIKeyID, store.HeldHeartbeat{SatelliteID: sat.ID, APIKeyHash: sat.APIKeyHash, ReceivedAt: now, Heartbeat: hb})
		sat.LastHeartbeatAt, sat.SystemMetrics, sat.ProcessCount, sat.OpenSessions = &now, hb.SystemMetrics, len(hb.Processes), hb.OpenSessions
		h.lastRead.Add(sat.APIKeyID, sat)
		return h.heartbeatResponse(sat), nil
	}
	done := h.beats.storeAtOnce(sat.ID)
	updated, err := h.store.RecordHeartbeat(ctx, sat.ID, sat.APIKeyHash, hb)
	done()
	if errors.Is(err, store.ErrNotFound) {
		h.lastRead.Remove(sat.APIKeyID)
		return nil, connect.NewError(connect.CodeUnauthenticated, errKeyNoLongerValid)
	}
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "record heartbeat", err)
	}
	h.lastRead.Add(sat.APIKeyID, updated) // the freshest row, for the next fast-path request
	// The statement stamps both with one now(): they are equal only on the heartbeat that activated it.
	activated := updated.ActivatedAt != nil && updated.LastHeartbeatAt != nil && updated.ActivatedAt.Equal(*updated.LastHeartbeatAt)
	if activated {
		h.logger.InfoContext(ctx, "satellite activated", "satellite_id", sat.ID, "url", updated.URL)
	}
	if h.cfg.Placement != nil && placementMayChange(sat, updated, activated, h.cfg.PlacementGrace) {
		// The heartbeat is stored whatever becomes of the placement; the periodic run tries again.
		if _, err := h.cfg.Placement.Recompute(ctx); err != nil {
			h.logger.ErrorContext(ctx, "recompute placement", "satellite_id", sat.ID, "error", err)
		}
	}
	return h.heartbeatResponse(updated), nil
}

func (h *Handler) heartbeatResponse(sat store.Satellite) *satellitev1.HeartbeatResponse {
	return &satellitev1.HeartbeatResponse{
		Status:               StatusToProto(sat.Status(h.cfg.Now(), h.OfflineAfter())),
		NextHeartbeat:        durationpb.New(h.cfg.HeartbeatInterval),
		PollsCarryHeartbeats: true,
	}
}

// placementMayChange reports whether a heartbeat may change where teams are placed. before is the
// satellite as read before the heartbeat, which may be a little stale; a needless recomputation is cheap
// and changes nothing.
func placementMayChange(before, after store.Satellite, activated bool, grace time.Duration) bool {
	switch {
	case activated:
		return true
	case before.LastHeartbeatAt == nil || after.LastHeartbeatAt == nil:
		return true
	case after.LastHeartbeatAt.Sub(*before.LastHeartbeatAt) > grace:
		return true // returned
	case after.Type != store.ScopeGlobal:
		return false
	case before.Capacity != after.Capacity || before.InternalURL != after.InternalURL:
		return true
	default:
		return after.DrainingAt != nil && after.DrainedAt == nil && after.OpenSessions == 0
	}
}

// Poll delays for satellites that cannot hold a call open, by the most urgent command just delivered.
const (
	pollDelayImmediate = 2 * time.Second
	pollDelayHigh      = 10 * time.Second
	pollDelayNormal    = 30 * time.Second
	defaultMaxCommands = 100
	// quietFor is the longest a poll trusts, without reading, that a satellite has nothing pending: a
	// backstop for a notification lost without the listener noticing.
	quietFor = time.Minute
)

// PollCommands delivers due commands, holding the call open until one arrives or the wait ends.
func (h *Handler) PollCommands(ctx context.Context, req *connect.Request[satellitev1.PollCommandsRequest]) (*connect.Response[satellitev1.PollCommandsResponse], error) {
	sat := satelliteFrom(ctx)
	resp := &satellitev1.PollCommandsResponse{NextPoll: durationpb.New(pollDelayNormal)}
	if req.Msg.Heartbeat != nil {
		// Recorded before the wait, so the satellite counts as heard from for the whole of a held poll; its
		// next poll comes well within the three intervals that make it offline.
		beat, err := h.recordHeartbeat(ctx, sat, req.Msg.Heartbeat)
		if err != nil {
			return nil, err
		}
		resp.Heartbeat = beat
	}
	limit := int(req.Msg.MaxCommands)
	if limit == 0 {
		limit = defaultMaxCommands
	}
	wait := min(req.Msg.Wait.AsDuration(), h.cfg.MaxPollWait)
	if wait >= time.Second {
		// A poll that ends empty ends within the last tenth of its wait, at random: a fleet whose polls
		// began together, as after a replica's restart, then does not renew them all at once every time.
		wait -= rand.N(wait / 10)
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	// Subscribe before the first read, so a command created between the read and the wait still wakes us.
	key := sat.ID.String()
	wake, unsubscribe := h.hub.Subscribe(key)
	defer unsubscribe()
	// A satellite this replica last found with nothing pending and no lease running has nothing until a
	// notification says so (a command enqueued or the satellite revoked, on any replica): a poll that waits
	// skips its read and waits for that notification. A poll that does not wait still reads, since the
	// notification of a command committed just before it may not have reached this replica yet.
	skipRead := wait > 0 && h.hub.Quiet(key, h.cfg.Now())
	for {
		var leaseLapse <-chan time.Time
		if !skipRead {
			// The lease lapse is asked for even by a poll that does not wait: without it, a poll could not
			// tell a satellite with nothing pending from one whose delivered commands may come due again.
			cmds, wakeup, err := h.store.ClaimCommands(ctx, sat.ID, sat.APIKeyHash, limit, h.cfg.CommandLease, true)
			switch {
			case errors.Is(err, store.ErrInactive):
				// The first heartbeat, sent alongside the first poll, is about to activate the satellite: ask
				// it back soon, or its first commands would wait out a normal poll delay.
				resp.NextPoll = durationpb.New(pollDelayImmediate)
				return connect.NewResponse(resp), nil
			case errors.Is(err, store.ErrNotFound):
				h.lastRead.Remove(sat.APIKeyID)
				return nil, connect.NewError(connect.CodeUnauthenticated, errKeyNoLongerValid)
			case err != nil:
				return nil, rpcerr.From(ctx, h.logger, "claim commands", err)
			}
			if len(cmds) > 0 {
				for _, c := range cmds {
					resp.Commands = append(resp.Commands, CommandToProto(c))
				}
				resp.NextPoll = durationpb.New(nextPollDelay(cmds))
				return connect.NewResponse(resp), nil
			}
			switch {
			case wakeup == nil:
				h.hub.MarkQuiet(key, wake, h.cfg.Now().Add(quietFor))
			case wait > 0:
				leaseLapse = time.After(max(wakeup.Sub(h.cfg.Now()), 10*time.Millisecond))
			}
		}
		skipRead = false
		select {
		case <-wake: // a notification came in: read (again)
		case <-leaseLapse:
		case <-deadline.C:
			return connect.NewResponse(resp), nil
		case <-h.draining:
			// This replica is going away: the satellite polls again at once, through the load balancer that
			// has stopped sending new connections here. next_poll is for satellites that predate the flag.
			resp.ReplicaDraining = true
			resp.NextPoll = durationpb.New(pollDelayImmediate)
			return connect.NewResponse(resp), nil
		case <-ctx.Done():
			return nil, connect.NewError(connect.CodeCanceled, ctx.Err())
		}
	}
}

func nextPollDelay(cmds []store.Command) time.Duration {
	switch satellitev1.CommandPriority(cmds[0].Priority) { // cmds are ordered most urgent first
	case satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE:
		return pollDelayImmediate
	case satellitev1.CommandPriority_COMMAND_PRIORITY_HIGH:
		return pollDelayHigh
	default:
		return pollDelayNormal
	}
}

// ReportCommandResult records a command's outcome.
func (h *Handler) ReportCommandResult(ctx context.Context, req *connect.Request[satellitev1.ReportCommandResultRequest]) (*connect.Response[satellitev1.ReportCommandResultResponse], error) {
	sat := satelliteFrom(ctx)
	id, _ := uuid.Parse(req.Msg.CommandId)
	state := store.CommandCompleted
	if req.Msg.Result == satellitev1.CommandResult_COMMAND_RESULT_FAILED {
		state = store.CommandFailed
	}
	cmd, err := h.store.FinishCommand(ctx, sat.ID, id, state, JSONFromMessage(req.Msg.Output), req.Msg.Outcomes, req.Msg.Error)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "command "+req.Msg.CommandId+" of this satellite", err)
	}
	if cmd.Kind == command.HealthCheck && cmd.State == store.CommandCompleted {
		// The result is stored; a failure to stamp the check times is the control plane's, not the satellite's.
		_, recovery, err := h.store.RecordCredentialChecks(ctx, cmd)
		switch {
		case err != nil:
			h.logger.ErrorContext(ctx, "record credential checks", "command_id", cmd.ID, "error", err)
		case recovery != nil:
			h.logger.InfoContext(ctx, "a remote server is healthy again; recovery sent", "command_id", recovery.ID,
				"installation_id", cmd.Action.GetHealthCheck().GetInstallationId(), "satellite_id", sat.ID)
		}
		if h.cfg.Alerts != nil {
			h.cfg.Alerts.CredentialChecksFailed(ctx, sat, cmd)
		}
	}
	return connect.NewResponse(&satellitev1.ReportCommandResultResponse{State: CommandStateFromName(cmd.State)}), nil
}

// GetConfiguration returns the instances this satellite must run. Team satellites see only their team.
func (h *Handler) GetConfiguration(ctx context.Context, req *connect.Request[satellitev1.GetConfigurationRequest]) (*connect.Response[satellitev1.GetConfigurationResponse], error) {
	sat := satelliteFrom(ctx)
	var team, placedOn *uuid.UUID
	if sat.Type == store.ScopeTeam {
		team = sat.TeamID
	} else {
		placedOn = &sat.ID
	}
	desired, err := h.store.DesiredInstances(ctx, team, placedOn)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "get configuration", err)
	}
	resp := &satellitev1.GetConfigurationResponse{}
	etag := sha256.New()
	if sat.Type == store.ScopeGlobal {
		if resp.Pool, err = h.pool(ctx, sat); err != nil {
			return nil, rpcerr.From(ctx, h.logger, "get configuration", err)
		}
		hash, err := hashMessage(resp.Pool, "pool")
		if err != nil {
			return nil, rpcerr.From(ctx, h.logger, "get configuration", err)
		}
		etag.Write([]byte("pool\x00" + hash + "\x00"))
	}
	for _, d := range desired {
		inst, err := instanceToProto(d)
		if err != nil {
			return nil, rpcerr.From(ctx, h.logger, "get configuration", err)
		}
		if d.AccountRequired && h.cfg.AccountLink != nil {
			inst.ConnectAccountUrl = h.cfg.AccountLink(d.TeamID, d.InstallationID)
		}
		if inst.ContentHash, err = contentHash(inst); err != nil {
			return nil, rpcerr.From(ctx, h.logger, "get configuration", err)
		}
		selection, err := selectionHash(inst)
		if err != nil {
			return nil, rpcerr.From(ctx, h.logger, "get configuration", err)
		}
		etag.Write([]byte(inst.Id + "\x00" + inst.ContentHash + "\x00" + selection + "\x00"))
		resp.Instances = append(resp.Instances, inst)
	}
	if resp.Policies, err = h.policies(ctx, desired); err != nil {
		return nil, rpcerr.From(ctx, h.logger, "get configuration", err)
	}
	for _, p := range resp.Policies {
		hash, err := hashMessage(p, "policy "+p.Name)
		if err != nil {
			return nil, rpcerr.From(ctx, h.logger, "get configuration", err)
		}
		etag.Write([]byte("policy\x00" + hash + "\x00"))
	}
	resp.Etag = hex.EncodeToString(etag.Sum(nil))[:32]
	if req.Msg.IfNoneMatch == resp.Etag {
		return connect.NewResponse(&satellitev1.GetConfigurationResponse{Etag: resp.Etag, NotModified: true}), nil
	}
	return connect.NewResponse(resp), nil
}

// pool is what a global satellite needs to share the pool URL: the URL, whether it drains, and its live
// peers.
func (h *Handler) pool(ctx context.Context, sat store.Satellite) (*satellitev1.Pool, error) {
	// The satellite's own row as read for this request says whether it drains, fresher than the peer list.
	pool := &satellitev1.Pool{Url: h.cfg.PoolURL, Draining: sat.DrainingAt != nil}
	peers, err := h.store.PoolPeers(ctx, h.OfflineAfter())
	if err != nil {
		return nil, err
	}
	for _, p := range peers {
		pool.Peers = append(pool.Peers, &satellitev1.Peer{
			SatelliteId: p.ID.String(), InternalUrl: p.InternalURL, Draining: p.Draining,
		})
	}
	return pool, nil
}

// policies are the global policies and those of the teams of desired: a satellite learns the policies of
// no team whose instances it does not run.
func (h *Handler) policies(ctx context.Context, desired []store.DesiredInstance) ([]*satellitev1.Policy, error) {
	var teams []uuid.UUID
	for _, d := range desired {
		if !slices.Contains(teams, d.TeamID) {
			teams = append(teams, d.TeamID)
		}
	}
	stored, err := h.store.PoliciesForTeams(ctx, teams)
	if err != nil {
		return nil, err
	}
	out := make([]*satellitev1.Policy, len(stored))
	for i, p := range stored {
		out[i] = policy.ToProto(p.Definition)
	}
	return out, nil
}

// contentHash hashes an instance's deterministic encoding, so it changes exactly when the instance does,
// except for its tool selection, which satellites apply without restarting the instance.
func contentHash(inst *satellitev1.Instance) (string, error) {
	sel := inst.ToolSelection
	inst.ToolSelection = nil
	defer func() { inst.ToolSelection = sel }()
	return hashMessage(inst, "instance "+inst.Id)
}

// selectionHash hashes an instance's tool selection, so that the configuration's ETag changes with it.
func selectionHash(inst *satellitev1.Instance) (string, error) {
	return hashMessage(inst.GetToolSelection(), "tool selection of instance "+inst.Id)
}

func hashMessage(m proto.Message, what string) (string, error) {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", what, err)
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:16]), nil
}

// EmitEvents stores a batch of events, skipping ones stored before.
func (h *Handler) EmitEvents(ctx context.Context, req *connect.Request[satellitev1.EmitEventsRequest]) (*connect.Response[satellitev1.EmitEventsResponse], error) {
	sat := satelliteFrom(ctx)
	events := make([]store.Event, len(req.Msg.Events))
	for i, e := range req.Msg.Events {
		events[i] = eventFromProto(e)
	}
	stored, dups, err := h.store.RecordEvents(ctx, sat, events)
	if errors.Is(err, store.ErrForeignInstance) {
		h.logger.WarnContext(ctx, "events refused", "security_event", "foreign_events", "satellite_id", sat.ID,
			"error", err)
	}
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "emit events", err)
	}
	if h.cfg.Alerts != nil {
		h.cfg.Alerts.InstancesFailed(ctx, sat, events)
	}
	return connect.NewResponse(&satellitev1.EmitEventsResponse{Stored: uint32(stored), Duplicates: uint32(dups)}), nil
}

// IntrospectToken reports whether an access token is active for a team this satellite serves. A global
// satellite not placed for the token's team, in a deployment with a pool URL, gets the team's placement
// and the identity signed for forwarding instead; without a pool URL the token is not active there.
func (h *Handler) IntrospectToken(ctx context.Context, req *connect.Request[satellitev1.IntrospectTokenRequest]) (*connect.Response[satellitev1.IntrospectTokenResponse], error) {
	sat := satelliteFrom(ctx)
	tok, err := h.store.ActiveAccessToken(ctx, bearer.Hash(req.Msg.Token))
	if errors.Is(err, store.ErrNotFound) || (err == nil && !sat.Serves(tok.TeamID)) {
		return connect.NewResponse(&satellitev1.IntrospectTokenResponse{}), nil
	}
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "introspect token", err)
	}
	resp := &satellitev1.IntrospectTokenResponse{
		Active: true, TeamId: tok.TeamID.String(), TeamSlug: tok.TeamSlug, UserId: tok.UserID.String(),
		UserSlug: tok.UserSlug, ClientId: tok.ClientID, Audience: tok.Audience, Scopes: tok.Scopes,
		ExpiresAt: timestamppb.New(tok.ExpiresAt), ToolsMode: toolsModeToProto(tok.ToolsMode),
		UserEmail: tok.UserEmail, TeamRole: policyRole(tok.TeamRole),
	}
	if sat.Type != store.ScopeGlobal {
		return connect.NewResponse(resp), nil
	}
	placed, err := h.store.TeamPlacement(ctx, tok.TeamID, h.OfflineAfter())
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "introspect token", err)
	}
	leaving := slices.ContainsFunc(placed, func(p store.PlacedSatellite) bool { return p.ID == sat.ID })
	if leaving && sat.DrainingAt == nil {
		return connect.NewResponse(resp), nil
	}
	// A draining satellite still holding the team serves the sessions open there; new ones go to the
	// satellites the team is placed on, never a draining one.
	if !leaving && sat.DrainingAt != nil && sat.DrainedAt == nil {
		if leaving, err = h.store.IsLeaving(ctx, tok.TeamID, sat.ID); err != nil {
			return nil, rpcerr.From(ctx, h.logger, "introspect token", err)
		}
	}
	placed = slices.DeleteFunc(placed, func(p store.PlacedSatellite) bool { return p.ID == sat.ID || p.Draining })
	if h.cfg.PoolURL == "" || len(h.cfg.PeerKeys) == 0 || len(placed) == 0 {
		if leaving {
			// No other satellite can take its new sessions: it keeps serving them until one can.
			return connect.NewResponse(resp), nil
		}
		return connect.NewResponse(&satellitev1.IntrospectTokenResponse{}), nil
	}
	identity := proto.CloneOf(resp)
	identity.ExpiresAt = timestamppb.New(earliest(tok.ExpiresAt, h.cfg.Now().Add(forwardedIdentityTTL)))
	if resp.ForwardedIdentity, err = peertoken.Sign(h.cfg.PeerKeys[0], peertoken.ForwardedIdentity, identity); err != nil {
		return nil, rpcerr.From(ctx, h.logger, "introspect token", err)
	}
	// Live satellites first, each group in placement order.
	slices.SortStableFunc(placed, func(a, b store.PlacedSatellite) int {
		switch {
		case a.Live == b.Live:
			return 0
		case a.Live:
			return -1
		default:
			return 1
		}
	})
	for _, p := range placed {
		resp.Placement = append(resp.Placement, &satellitev1.Peer{
			SatelliteId: p.ID.String(), InternalUrl: p.InternalURL, Draining: p.Draining,
		})
	}
	return connect.NewResponse(resp), nil
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func toolsModeToProto(mode string) satellitev1.ToolsMode {
	if mode == store.ToolsModeSearch {
		return satellitev1.ToolsMode_TOOLS_MODE_SEARCH
	}
	return satellitev1.ToolsMode_TOOLS_MODE_ALL
}

// policyRole is a team role as policies name it.
func policyRole(role string) string {
	switch role {
	case store.RoleTeamAdmin:
		return "admin"
	case "":
		return ""
	}
	return "member"
}

// audit appends to the audit log; a failure is logged, since the action it records has already happened.
func (h *Handler) audit(ctx context.Context, e store.AuditEvent) {
	if err := h.store.Audit(ctx, e); err != nil {
		h.logger.ErrorContext(ctx, "write audit log", "action", e.Action, "error", err)
	}
}

// GetPeerCredential issues a global satellite a credential for its pool's internal channel, with the keys
// that verify credentials and forwarded identities. Team satellites do not forward and get none.
func (h *Handler) GetPeerCredential(ctx context.Context, _ *connect.Request[satellitev1.GetPeerCredentialRequest]) (*connect.Response[satellitev1.GetPeerCredentialResponse], error) {
	sat := satelliteFrom(ctx)
	if sat.Type != store.ScopeGlobal {
		return nil, connect.NewError(connect.CodePermissionDenied, errors.New("only global satellites belong to a pool"))
	}
	if len(h.cfg.PeerKeys) == 0 {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("this control plane signs no peer credentials"))
	}
	expires := timestamppb.New(h.cfg.Now().Add(h.cfg.PeerCredentialTTL))
	credential, err := peertoken.Sign(h.cfg.PeerKeys[0], peertoken.PeerCredential, &satellitev1.PeerCredential{
		SatelliteId: sat.ID.String(), ExpiresAt: expires,
	})
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "sign peer credential", err)
	}
	resp := &satellitev1.GetPeerCredentialResponse{Credential: credential, ExpiresAt: expires}
	for _, k := range h.cfg.PeerKeys {
		resp.VerificationKeys = append(resp.VerificationKeys, []byte(k.Public().(ed25519.PublicKey)))
	}
	return connect.NewResponse(resp), nil
}
