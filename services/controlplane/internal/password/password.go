// Package password hashes secrets with Argon2id in the PHC string format: users' passwords, satellites' API
// key secrets and confidential OAuth clients' secrets.
//
// Argon2id is deliberately expensive: every run takes 19 MiB of memory and tens of milliseconds of CPU. So
// that parallel sign-ins queue instead of exhausting memory, every run in the process takes one of a fixed
// number of slots, one per CPU, and waits at most MaxWait for one. The slots belong to the package rather
// than to a value handed around: the memory they protect is the process's, and a second set of slots would
// double the bound.
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters: the OWASP recommendation of 19 MiB, 2 passes, 1 lane.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
	saltLen        = 16
)

// cost is what Hash spends on a new hash.
var cost = struct{ memoryKiB, passes uint32 }{argonMemoryKiB, argonTime}

// LowerCostForTests makes new hashes as cheap as Argon2id allows, for test binaries that hash secrets by
// the hundred: under the race detector one hash at full cost takes most of a second. Verify reads each
// hash's own parameters, so every path stays the one production takes. Call it from TestMain, before any
// test runs; it panics outside a test binary.
func LowerCostForTests() {
	if !testing.Testing() {
		panic("password: LowerCostForTests outside a test binary")
	}
	cost.memoryKiB, cost.passes = 8*argonThreads, 1
}

// MaxWait is the longest a hash or verification waits for a free slot before giving up with ErrBusy. A
// person signing in would rather hear "try again" after a few seconds than wait on a queue that is not
// moving; a satellite retries with backoff.
const MaxWait = 5 * time.Second

// ErrBusy reports that every Argon2 slot stayed taken for MaxWait.
var ErrBusy = errors.New("too many password checks at once; try again shortly")

// slots bounds the Argon2 runs of the whole process, one per CPU it may use: GOMAXPROCS follows a
// container's CPU limit where NumCPU counts the host's.
var slots = newLimiter(runtime.GOMAXPROCS(0), MaxWait)

// limiter is a counting semaphore with a bounded wait.
type limiter struct {
	slots   chan struct{}
	maxWait time.Duration
}

func newLimiter(n int, maxWait time.Duration) *limiter {
	return &limiter{slots: make(chan struct{}, max(n, 1)), maxWait: maxWait}
}

// acquire takes a slot, waiting at most maxWait and no longer than ctx lives. It returns the function that
// gives the slot back.
func (l *limiter) acquire(ctx context.Context) (release func(), err error) {
	select {
	case l.slots <- struct{}{}:
		return l.release, nil
	default:
	}
	timer := time.NewTimer(l.maxWait)
	defer timer.Stop()
	select {
	case l.slots <- struct{}{}:
		return l.release, nil
	case <-timer.C:
		return nil, ErrBusy
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (l *limiter) release() { <-l.slots }

// Slots is how many Argon2 runs the process allows at once.
func Slots() int { return cap(slots.slots) }

// Hash returns the Argon2id hash of secret. It fails with ErrBusy, or ctx's error, when no slot frees up in
// time.
func Hash(ctx context.Context, secret string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("read random: %w", err)
	}
	release, err := slots.acquire(ctx)
	if err != nil {
		return "", fmt.Errorf("hash secret: %w", err)
	}
	sum := argon2.IDKey([]byte(secret), salt, cost.passes, cost.memoryKiB, argonThreads, argonKeyLen)
	release()
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, cost.memoryKiB, cost.passes, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(sum)), nil
}

// Verify reports whether secret matches a hash made by Hash. A malformed hash matches nothing. It fails with
// ErrBusy, or ctx's error, when no slot frees up in time; a caller must then treat the secret as unchecked,
// neither right nor wrong.
func Verify(ctx context.Context, secret, encoded string) (bool, error) {
	p, ok := parse(encoded)
	if !ok {
		return false, nil
	}
	release, err := slots.acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("verify secret: %w", err)
	}
	got := argon2.IDKey([]byte(secret), p.salt, p.passes, p.memory, p.threads, uint32(len(p.key)))
	release()
	return subtle.ConstantTimeCompare(got, p.key) == 1, nil
}

// params are the parts of an encoded hash.
type params struct {
	memory, passes uint32
	threads        uint8
	salt, key      []byte
}

// Hashes that would make one verification cost far more than this package ever asks for are refused, so a
// hash from elsewhere cannot defeat the memory bound or hold a slot for long.
const (
	maxMemoryKiB = 64 * 1024
	maxPasses    = 10
)

func parse(encoded string) (params, bool) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return params{}, false
	}
	var version int
	var p params
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return params{}, false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.passes, &p.threads); err != nil ||
		p.memory > maxMemoryKiB || p.passes == 0 || p.passes > maxPasses || p.threads == 0 {
		return params{}, false
	}
	var err error
	if p.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil {
		return params{}, false
	}
	if p.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(p.key) == 0 {
		return params{}, false
	}
	return p, true
}
