// Package sdkjson decodes JSON-RPC messages exactly as the MCP Go SDK decodes them, with less work: the
// SDK's decoder allocates a 32 KiB buffer for every value it decodes, three of them for each message a
// connection reads. The gateway decides what a request may do from the very messages the SDK will
// dispatch, and the runtime reads what stdio servers write, so both decode with these.
package sdkjson

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	segjson "github.com/segmentio/encoding/json"
)

// DecodeBatch decodes data as the SDK's readBatch does: a JSON array of messages if data reads as one
// (isBatch), else a single message.
func DecodeBatch(data []byte) (msgs []jsonrpc.Message, isBatch bool, err error) {
	if MayBeBatch(data) {
		var raw []json.RawMessage
		if Unmarshal(data, &raw) == nil {
			if len(raw) == 0 {
				return nil, true, errors.New("empty batch")
			}
			msgs := make([]jsonrpc.Message, 0, len(raw))
			for _, r := range raw {
				msg, err := DecodeMessage(r)
				if err != nil {
					return nil, true, err
				}
				msgs = append(msgs, msg)
			}
			return msgs, true, nil
		}
	}
	msg, err := DecodeMessage(data)
	if err != nil {
		return nil, false, err
	}
	return []jsonrpc.Message{msg}, false, nil
}

// wireMessage is the SDK's decoding form of a JSON-RPC message (jsonrpc2.wireDecode): method is raw so
// that a "method" key holding "" still makes a request.
type wireMessage struct {
	VersionTag string          `json:"jsonrpc"`
	ID         any             `json:"id,omitempty"`
	Method     json.RawMessage `json:"method"`
	Params     json.RawMessage `json:"params,omitempty"`
	Result     json.RawMessage `json:"result,omitempty"`
	Error      *jsonrpc.Error  `json:"error,omitempty"`
}

// DecodeMessage is jsonrpc.DecodeMessage, step by step, with Unmarshal: the same decoder and the same
// checks, without the SDK's 32 KiB decoder buffer for each of its two decodes.
func DecodeMessage(data []byte) (jsonrpc.Message, error) {
	var msg wireMessage
	if err := Unmarshal(data, &msg); err != nil {
		return nil, fmt.Errorf("unmarshaling jsonrpc message: %w", err)
	}
	if msg.VersionTag != "2.0" {
		return nil, fmt.Errorf("invalid message version tag %q; expected %q", msg.VersionTag, "2.0")
	}
	id, err := jsonrpc.MakeID(msg.ID)
	if err != nil {
		return nil, err
	}
	if len(msg.Method) > 0 {
		var method string
		if err := Unmarshal(msg.Method, &method); err != nil {
			return nil, fmt.Errorf("unmarshaling jsonrpc message: %w", err)
		}
		return &jsonrpc.Request{Method: method, ID: id, Params: msg.Params}, nil
	}
	if !id.IsValid() {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "invalid request"}
	}
	resp := &jsonrpc.Response{ID: id, Result: msg.Result}
	if msg.Error != nil {
		resp.Error = msg.Error
	}
	return resp, nil
}

// MayBeBatch reports whether body could decode as a JSON array, or as null, which decodes as an empty
// one: its first byte after JSON whitespace is '[' or 'n'. For any other body the SDK's attempt to read a
// batch fails and it reads a single message, so the attempt is skipped here, a decoder's worth of work
// less on every request.
func MayBeBatch(body []byte) bool {
	for _, b := range body {
		switch b {
		case ' ', '\t', '\n', '\r':
		case '[', 'n':
			return true
		default:
			return false
		}
	}
	return false
}

// Unmarshal decodes data as the SDK's internal/json.Unmarshal, which jsonrpc.DecodeMessage uses and
// which is not importable: the SDK's nesting limit, then segmentio's decoder with exact key matching,
// reading the first JSON value of data and ignoring what follows it. The decoder first checks the
// value's syntax and then parses it; segmentio's Parse and Valid do the same without the decoder's
// 32 KiB read buffer, which the SDK allocates for every value it decodes (upstream should parse in
// place the same way).
func Unmarshal(data []byte, v any) error {
	if err := checkMaxDepth(data, maxDepth); err != nil {
		return err
	}
	rest, err := segjson.Parse(data, v, segjson.DontMatchCaseInsensitiveStructFields)
	if err != nil {
		return err
	}
	if first := data[:len(data)-len(rest)]; !segjson.Valid(first) {
		return errors.New("json: invalid syntax in the first value")
	}
	return nil
}

// maxDepth is the SDK's nesting limit for JSON it decodes.
const maxDepth = 1000

// checkMaxDepth is the SDK's check, byte for byte: brackets outside strings count, whether or not the
// JSON is valid.
func checkMaxDepth(data []byte, limit int) error {
	var depth int
	var inString, escaped bool
	for _, b := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
			continue
		}
		switch b {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > limit {
				return fmt.Errorf("json: exceeded maximum nesting depth of %d", limit)
			}
		case '}', ']':
			if depth > 0 {
				depth--
			}
		}
	}
	return nil
}
