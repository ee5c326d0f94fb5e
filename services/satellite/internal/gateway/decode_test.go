package gateway

import (
	"reflect"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/orrery/orrery/services/satellite/internal/sdkjson"
)

// FuzzDecodeMessage holds decodeMessage to the SDK's jsonrpc.DecodeMessage, which it replaces in guard
// to spare the SDK's decoder buffers: the same message, or an error from both.
func FuzzDecodeMessage(f *testing.F) {
	for _, c := range scopeBypasses {
		f.Add([]byte(c.body))
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`,
		`{"jsonrpc":"2.0","id":"a","error":{"code":-32601,"message":"no"}}`,
		`{"jsonrpc":"2.0","method":""}`,
		`{"jsonrpc":"2.0","id":1.5,"method":"ping"} trailing`,
		`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":[1,2,}}`,
		`{"jsonrpc":"2.0","id":true,"method":"ping"}`,
		`{"jsonrpc":"2.0"}`,
		`  {"jsonrpc":"2.0","id":null,"method":"notifications/initialized"}  `,
		`{"JSONRPC":"2.0","id":1,"method":"ping"}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ours, err := sdkjson.DecodeMessage(body)
		sdk, sdkErr := jsonrpc.DecodeMessage(body)
		if (err == nil) != (sdkErr == nil) {
			t.Fatalf("%q: decodeMessage error %v, the SDK's %v", body, err, sdkErr)
		}
		if err == nil && !reflect.DeepEqual(ours, sdk) {
			t.Fatalf("%q: decodeMessage %#v, the SDK %#v", body, ours, sdk)
		}
	})
}
