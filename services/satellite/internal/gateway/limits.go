package gateway

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// codeSessionLimit is the JSON-RPC error code of a request refused because a session limit is reached;
// -32000 to -32099 are the codes JSON-RPC leaves to servers.
const codeSessionLimit = -32000

// sessionLimitRetryAfter is the Retry-After, in seconds, of a refusal because the satellite is full.
const sessionLimitRetryAfter = 30

// sessionSlots counts the MCP sessions the endpoint holds, per user, per team and in all, and refuses a
// new one past any of the limits. A slot is taken before the SDK creates a session, so the count is never behind
// what the SDK holds however many requests race, and given back when the session ends: a Streamable
// HTTP session when it closes (a DELETE, the idle timeout, a revocation), a legacy SSE session when its
// stream ends, and a POST that opened no session when it is answered.
type sessionSlots struct {
	perUser, perTeam, total int

	mu     sync.Mutex
	byUser map[string]int
	byTeam map[string]int
	held   int
}

func newSessionSlots(perUser, perTeam, total int) *sessionSlots {
	return &sessionSlots{perUser: perUser, perTeam: perTeam, total: total,
		byUser: make(map[string]int), byTeam: make(map[string]int)}
}

// slot is one session's place in the count.
type slot struct {
	slots      *sessionSlots
	user, team string
	once       sync.Once
}

// sessionLimitError is a refusal: the status, and a message that names the limit but nothing of other
// users.
type sessionLimitError struct {
	// limit names the limit reached: user, team or satellite.
	limit      string
	status     int
	msg        string
	retryAfter int
}

// take reserves a slot for a new session of user in team, or says which limit refuses it.
func (s *sessionSlots) take(user, team string) (*slot, *sessionLimitError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.byUser[user] >= s.perUser:
		return nil, &sessionLimitError{
			limit:  "user",
			status: http.StatusTooManyRequests,
			msg: fmt.Sprintf("too many MCP sessions: a user may hold %d on this satellite; end one (DELETE) or reuse one",
				s.perUser),
		}
	case s.byTeam[team] >= s.perTeam:
		// A team admin can mint service users (OAuth clients), so the per-user limit alone would not
		// keep one team from taking the whole satellite.
		return nil, &sessionLimitError{
			limit:  "team",
			status: http.StatusTooManyRequests,
			msg: fmt.Sprintf("too many MCP sessions: a team may hold %d on this satellite; end some (DELETE) or reuse them",
				s.perTeam),
		}
	case s.held >= s.total:
		return nil, &sessionLimitError{
			limit:      "satellite",
			status:     http.StatusServiceUnavailable,
			msg:        fmt.Sprintf("this satellite holds its limit of %d MCP sessions; try again later", s.total),
			retryAfter: sessionLimitRetryAfter,
		}
	}
	s.byUser[user]++
	s.byTeam[team]++
	s.held++
	return &slot{slots: s, user: user, team: team}, nil
}

// open is the number of slots held.
func (s *sessionSlots) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// release gives the slot back. Calling it again does nothing.
func (sl *slot) release() {
	sl.once.Do(func() {
		s := sl.slots
		s.mu.Lock()
		defer s.mu.Unlock()
		s.held--
		if s.byUser[sl.user]--; s.byUser[sl.user] <= 0 {
			delete(s.byUser, sl.user)
		}
		if s.byTeam[sl.team]--; s.byTeam[sl.team] <= 0 {
			delete(s.byTeam, sl.team)
		}
	})
}

// write answers the refused request with a JSON-RPC error; id is the request's, if it had one.
func (e *sessionLimitError) write(w http.ResponseWriter, id jsonrpc.ID) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	writeRPCError(w, e.status, id, codeSessionLimit, e.msg)
}
