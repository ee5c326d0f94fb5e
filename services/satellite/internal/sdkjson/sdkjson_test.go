package sdkjson

import (
	"reflect"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// TestDecodeBatch reads a batch as the SDK's readBatch does: an array of messages is a batch, an empty
// one or null is refused, anything else is one message, decoded as jsonrpc.DecodeMessage decodes it.
func TestDecodeBatch(t *testing.T) {
	t.Parallel()
	one := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	for _, c := range []struct {
		data    string
		n       int
		isBatch bool
		fails   bool
	}{
		{one, 1, false, false},
		{" \n[" + one + `,{"jsonrpc":"2.0","method":"notifications/x"}]`, 2, true, false},
		{`[]`, 0, true, true},
		{`null`, 0, true, true},
		{`[` + one + `,{"jsonrpc":"1.0","id":2,"result":{}}]`, 0, true, true},
		{`{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call"}`, 1, false, false},
		{`nope`, 0, false, true},
	} {
		msgs, isBatch, err := DecodeBatch([]byte(c.data))
		if (err != nil) != c.fails || isBatch != c.isBatch || len(msgs) != c.n {
			t.Errorf("%s: %d messages, batch %v, error %v", c.data, len(msgs), isBatch, err)
			continue
		}
		if c.n == 1 {
			want, err := jsonrpc.DecodeMessage([]byte(c.data))
			if err != nil || !reflect.DeepEqual(msgs[0], want) {
				t.Errorf("%s: decoded %#v, the SDK %#v (%v)", c.data, msgs[0], want, err)
			}
		}
	}
}
