package alert

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Headers of a delivery.
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256>".
	SignatureHeader = "Orrery-Signature"
	// EventIDHeader names the alert; retries of a delivery carry the same id, so receivers can drop repeats.
	EventIDHeader = "Orrery-Event-Id"
	// EventTypeHeader is the alert's kind, such as satellite.offline.
	EventTypeHeader = "Orrery-Event-Type"
	// DeliveryIDHeader names the delivery, as listed in the delivery log.
	DeliveryIDHeader = "Orrery-Delivery-Id"
)

// secretPrefix marks webhook signing secrets, so a leaked one is recognisable.
const secretPrefix = "whsec_"

// NewSecret returns a fresh signing secret: 32 random bytes.
func NewSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails: crypto/rand panics rather than return short
	return secretPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// Sign returns the SignatureHeader value for body sent at t: the HMAC-SHA256, keyed with the secret exactly
// as shown when the webhook was created, of the decimal Unix time, a dot, and the body.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verification errors.
var (
	ErrBadSignature = errors.New("signature does not match")
	ErrStale        = errors.New("signature timestamp outside the tolerance")
)

// Verify checks a SignatureHeader value the way a receiver should: the v1 HMAC over the timestamp and the
// raw body, compared in constant time, and a timestamp within tolerance of now, which stops replays.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if sig, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, sig)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: no timestamp", ErrBadSignature)
	}
	want := mac(secret, ts, body)
	ok := false
	for _, sig := range sigs {
		ok = ok || hmac.Equal(sig, want)
	}
	if !ok {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	return nil
}
