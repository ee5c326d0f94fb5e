package gateway

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// inputWait is how long a request that asked a client of the 2026-07-28 era for input waits for the
// client to come back with it. After that the downstream request is cancelled.
const inputWait = 5 * time.Minute

// A client of the 2026-07-28 era cannot be sent requests. When an instance (which the runtime speaks to
// in the session era) asks its client for sampling, elicitation or roots while serving such a client's
// tools/call, prompts/get or resources/read, the gateway keeps the downstream request running, answers
// the client with an input_required result carrying the instance's request, and passes the answer on
// when the client retries with it. The result's requestState names the waiting request; it is random,
// and only the same user retrying the same feature can use it.

// inputRound is one downstream request that may ask its client for input.
type inputRound struct {
	us      *userServer
	rt      route
	cancel  context.CancelFunc
	result  chan roundResult // the downstream request's outcome; buffered
	asks    chan *inputAsk   // the instance's requests to its client
	refused chan error       // a request the client cannot be asked; buffered

	// Set while the round waits for the client's retry.
	pending *inputAsk
	key     string
	timer   *time.Timer
}

type roundResult struct {
	res mcp.Result
	err error
}

// inputAsk is one request of the instance to its client, waiting for the answer.
type inputAsk struct {
	params mcp.InputRequest
	answer chan roundResult // buffered
}

// inputRounds are the rounds waiting for a client's retry, by request state.
type inputRounds struct {
	mu     sync.Mutex
	rounds map[string]*inputRound
	next   uint64
}

type (
	askKey    struct{}
	refuseKey struct{}
	capsKey   struct{}
)

// withCallerCaps gives the requests an instance sends while serving ctx's call the client capabilities
// caps to be checked against, for a caller that is no session of the SDK's.
func withCallerCaps(ctx context.Context, caps *mcp.ClientCapabilities) context.Context {
	return context.WithValue(ctx, capsKey{}, caps)
}

func capsFrom(ctx context.Context) *mcp.ClientCapabilities {
	caps, _ := ctx.Value(capsKey{}).(*mcp.ClientCapabilities)
	return caps
}

// askFunc carries an instance's request to its client some other way than as a request.
type askFunc func(ctx context.Context, params mcp.InputRequest) (mcp.Result, error)

func withAsk(ctx context.Context, ask askFunc) context.Context {
	return context.WithValue(ctx, askKey{}, ask)
}

func askFrom(ctx context.Context) askFunc {
	ask, _ := ctx.Value(askKey{}).(askFunc)
	return ask
}

// refuseFunc ends a round with an error for its client, such as a request it lacks the capability for.
type refuseFunc func(error)

func withRefuse(ctx context.Context, refuse refuseFunc) context.Context {
	return context.WithValue(ctx, refuseKey{}, refuse)
}

func refuseFrom(ctx context.Context) refuseFunc {
	refuse, _ := ctx.Value(refuseKey{}).(refuseFunc)
	return refuse
}

// usesInputRequired says whether a client wants input requests as input_required results.
func usesInputRequired(ss *mcp.ServerSession) bool {
	ip := ss.InitializeParams()
	return ip != nil && ip.ProtocolVersion >= "2026-07-28"
}

// inputRequired is the outcome of a round that needs the client's input.
type inputRequired struct {
	requests mcp.InputRequestMap
	state    string
}

// roundTrip runs do, a request to rt's instance for a client of the 2026-07-28 era, or continues the one
// state names with the client's responses. It returns do's result, or the input the instance asked for.
func (g *Gateway) roundTrip(ctx context.Context, us *userServer, rt route, state string, responses mcp.InputResponseMap,
	do func(context.Context) (mcp.Result, error)) (mcp.Result, *inputRequired, error) {
	var r *inputRound
	if state == "" {
		r = g.startRound(ctx, us, rt, do)
	} else {
		r = g.inputs.take(state, us, rt)
		if r == nil {
			return nil, nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "unknown or expired requestState"}
		}
		resp, ok := responses[r.key].(mcp.Result)
		if !ok {
			r.cancel()
			return nil, nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("inputResponses has no answer for %q", r.key)}
		}
		r.pending.answer <- roundResult{res: resp}
		r.pending = nil
	}
	// While the client waits for this round, its going away ends the downstream request.
	stop := context.AfterFunc(ctx, r.cancel)
	select {
	case out := <-r.result:
		stop()
		r.cancel()
		return out.res, nil, out.err
	case ask := <-r.asks:
		if !stop() {
			return nil, nil, ctx.Err()
		}
		r.pending = ask
		state, key := g.inputs.park(r)
		return nil, &inputRequired{requests: mcp.InputRequestMap{key: ask.params}, state: state}, nil
	case err := <-r.refused:
		stop()
		r.cancel()
		return nil, nil, err
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// startRound starts do detached from the client's request, which ends when the client is asked for
// input, with the instance's requests to its client routed to the round.
func (g *Gateway) startRound(ctx context.Context, us *userServer, rt route, do func(context.Context) (mcp.Result, error)) *inputRound {
	r := &inputRound{us: us, rt: rt, result: make(chan roundResult, 1), asks: make(chan *inputAsk), refused: make(chan error, 1)}
	var dctx context.Context
	dctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	dctx = withRefuse(dctx, func(err error) {
		select {
		case r.refused <- err:
		default:
		}
	})
	dctx = withAsk(dctx, func(ctx context.Context, params mcp.InputRequest) (mcp.Result, error) {
		ask := &inputAsk{params: params, answer: make(chan roundResult, 1)}
		select {
		case r.asks <- ask:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		select {
		case out := <-ask.answer:
			return out.res, out.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	// The downstream request uses the user's server until it ends, also while it waits for the client.
	release := g.hold(us)
	go func() {
		defer release()
		res, err := do(dctx)
		r.result <- roundResult{res: res, err: err}
	}()
	return r
}

// park keeps a round until the client retries or inputWait passes, and returns its request state and
// the key of its pending input request.
func (p *inputRounds) park(r *inputRound) (state, key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	state = rand.Text()
	r.key = fmt.Sprintf("input-%d", p.next)
	p.rounds[state] = r
	r.timer = time.AfterFunc(inputWait, func() {
		if p.take(state, r.us, r.rt) != nil {
			r.cancel()
		}
	})
	return state, r.key
}

// owns reports whether state names a round waiting for its client.
func (p *inputRounds) owns(state string) bool {
	if state == "" {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rounds[state] != nil
}

// take removes and returns the round of state, provided it belongs to the user and feature asking.
func (p *inputRounds) take(state string, us *userServer, rt route) *inputRound {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rounds[state]
	if r == nil || r.us != us || r.rt.inst.ID != rt.inst.ID || r.rt.name != rt.name {
		return nil
	}
	delete(p.rounds, state)
	r.timer.Stop()
	return r
}
