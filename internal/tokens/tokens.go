// Package tokens counts model tokens offline with the cl100k_base byte-pair encoding of tiktoken, whose
// ranks ship inside the binary, so a count never needs the network.
//
//	c, err := tokens.Load()
//	n := c.Count(`{"name":"echo"}`)
package tokens

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/pkoukk/tiktoken-go"
	tiktokenloader "github.com/pkoukk/tiktoken-go-loader"
)

// Encoding is the byte-pair encoding counts are made with.
const Encoding = "cl100k_base"

// Counter counts tokens. It is safe for concurrent use.
type Counter struct {
	enc *tiktoken.Tiktoken
}

// load builds the encoding once per process: tiktoken-go keeps its loader in a package variable, and the
// ranks take tens of megabytes, which every Counter can share.
var load = sync.OnceValues(func() (*tiktoken.Tiktoken, error) {
	tiktoken.SetBpeLoader(tiktokenloader.NewOfflineLoader())
	enc, err := tiktoken.GetEncoding(Encoding)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", Encoding, err)
	}
	return enc, nil
})

// Load returns a Counter. The first call decodes the embedded ranks, which takes a fraction of a second.
func Load() (*Counter, error) {
	enc, err := load()
	if err != nil {
		return nil, err
	}
	return &Counter{enc: enc}, nil
}

// Count returns the number of tokens of text. Special tokens such as <|endoftext|> count as the plain
// text they are, as they would in a tool definition sent to a model.
func (c *Counter) Count(text string) int {
	return len(c.enc.EncodeOrdinary(text))
}

// JSON returns the number of tokens of v's JSON encoding.
func (c *Counter) JSON(v any) (int, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode for counting: %w", err)
	}
	return c.Count(string(b)), nil
}
