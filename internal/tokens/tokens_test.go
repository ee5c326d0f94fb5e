package tokens_test

import (
	"testing"

	"github.com/orrery/orrery/internal/tokens"
)

func TestCount(t *testing.T) {
	t.Parallel()
	c, err := tokens.Load()
	if err != nil {
		t.Fatal(err)
	}
	// cl100k_base counts; "hello world" and "tiktoken is great!" are tiktoken's own documented examples.
	for _, tc := range []struct {
		text string
		want int
	}{
		{"", 0},
		{"hello world", 2},
		{"tiktoken is great!", 6},
		{`{"name":"echo","description":"Echoes back the input"}`, 13},
		{"<|endoftext|>", 7},
	} {
		if got := c.Count(tc.text); got != tc.want {
			t.Errorf("Count(%q) = %d, want %d", tc.text, got, tc.want)
		}
	}
	n, err := c.JSON(map[string]string{"name": "echo"})
	if err != nil || n != c.Count(`{"name":"echo"}`) {
		t.Errorf("JSON = %d, %v; want the count of the encoded object", n, err)
	}
}
