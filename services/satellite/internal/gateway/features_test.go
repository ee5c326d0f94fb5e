package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// addGlobex adds a server as an instance of cid in globex, whose only other instance is "secretserver".
func (b *bundle) addGlobex(t *testing.T, slug string, server *mcp.Server) {
	t.Helper()
	b.backend.add(t, Instance{ID: slug + "-1", InstallationID: "inst-" + slug, TeamID: teamGlobex, UserID: userCid,
		ServerSlug: slug, Prefix: slug, Online: true, Status: "online"}, server)
}

func textOf(t *testing.T, res *mcp.ReadResourceResult, err error) string {
	t.Helper()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if len(res.Contents) != 1 {
		t.Fatalf("contents = %+v", res.Contents)
	}
	return res.Contents[0].Text
}

func TestResourceTemplates(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	for _, slug := range []string{"zulu", "able"} {
		s := mcp.NewServer(&mcp.Implementation{Name: slug}, nil)
		s.AddResourceTemplate(&mcp.ResourceTemplate{Name: "item", URITemplate: "test://" + slug + "/{id}"},
			func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
				return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: slug + ":" + req.Params.URI}}}, nil
			})
		b.addGlobex(t, slug, s)
	}
	for _, era := range eras[:2] {
		t.Run(era.name, func(t *testing.T) {
			t.Parallel()
			cs := b.connect(t, "cid", "globex", era.opts)
			res, err := cs.ListResourceTemplates(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, rt := range res.ResourceTemplates {
				got = append(got, rt.Name+" "+rt.URITemplate)
			}
			if want := "able__item test://able/{id},zulu__item test://zulu/{id}"; strings.Join(got, ",") != want {
				t.Errorf("templates = %v, want %s", got, want)
			}
			read, err := cs.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "test://zulu/42"})
			if got := textOf(t, read, err); got != "zulu:test://zulu/42" {
				t.Errorf("read = %q", got)
			}
			if _, err := cs.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "test://nobody/42"}); err == nil {
				t.Error("a URI no template matches was read")
			}
		})
	}
	// Another user of the team sees none of it.
	b.token("bob-globex", teamGlobex, "globex", userBob, ScopeRead, ScopeExecute)
	res, err := b.connect(t, "bob-globex", "globex", clientOptions{version: sessionVersion}).ListResourceTemplates(t.Context(), nil)
	if err != nil || len(res.ResourceTemplates) != 0 {
		t.Errorf("bob's templates = %+v, %v", res, err)
	}
}

func TestCompletion(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	var gotRef *mcp.CompleteReference
	s := mcp.NewServer(&mcp.Implementation{Name: "comp"}, &mcp.ServerOptions{
		CompletionHandler: func(_ context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
			gotRef = req.Params.Ref
			return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{
				Values: []string{req.Params.Argument.Value + "-one", req.Params.Argument.Value + "-two"}, Total: 2}}, nil
		},
	})
	s.AddPrompt(&mcp.Prompt{Name: "greet", Arguments: []*mcp.PromptArgument{{Name: "who"}}}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "hi"}}}}, nil
	})
	s.AddResourceTemplate(&mcp.ResourceTemplate{Name: "item", URITemplate: "test://comp/{id}"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return nil, mcp.ResourceNotFoundError("")
	})
	b.addGlobex(t, "comp", s)
	cs := b.connect(t, "cid", "globex", clientOptions{version: sessionVersion})
	if cs.InitializeResult().Capabilities.Completions == nil {
		t.Error("completions capability not declared")
	}

	res, err := cs.Complete(t.Context(), &mcp.CompleteParams{
		Ref: &mcp.CompleteReference{Type: "ref/prompt", Name: "comp__greet"}, Argument: mcp.CompleteParamsArgument{Name: "who", Value: "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Completion.Values, ",") != "a-one,a-two" || gotRef.Name != "greet" {
		t.Errorf("completion = %+v, downstream ref = %+v", res.Completion, gotRef)
	}
	res, err = cs.Complete(t.Context(), &mcp.CompleteParams{
		Ref: &mcp.CompleteReference{Type: "ref/resource", URI: "test://comp/{id}"}, Argument: mcp.CompleteParamsArgument{Name: "id", Value: "b"}})
	if err != nil || len(res.Completion.Values) != 2 || gotRef.URI != "test://comp/{id}" {
		t.Errorf("template completion = %+v, %v; downstream ref = %+v", res, err, gotRef)
	}
	// A name that is not public, such as the downstream one, is unknown.
	for _, name := range []string{"secretserver__nothing", "greet"} {
		_, err = cs.Complete(t.Context(), &mcp.CompleteParams{
			Ref: &mcp.CompleteReference{Type: "ref/prompt", Name: name}, Argument: mcp.CompleteParamsArgument{Name: "x"}})
		var jerr *jsonrpc.Error
		if !errors.As(err, &jerr) || jerr.Code != jsonrpc.CodeInvalidParams {
			t.Errorf("complete %s: %v", name, err)
		}
	}
}

// newWatched is a server with the subscribable resource test://watched; it tells subs of each
// "subscribe URI" and "unsubscribe URI" it gets.
func newWatched(subs chan<- string) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "watch"}, &mcp.ServerOptions{
		SubscribeHandler: func(_ context.Context, req *mcp.SubscribeRequest) error {
			subs <- "subscribe " + req.Params.URI
			return nil
		},
		UnsubscribeHandler: func(_ context.Context, req *mcp.UnsubscribeRequest) error {
			subs <- "unsubscribe " + req.Params.URI
			return nil
		},
	})
	s.AddResource(&mcp.Resource{URI: "test://watched", Name: "watched"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: "test://watched", Text: "now"}}}, nil
	})
	return s
}

func TestSubscribe(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	downstreamSubs := make(chan string, 4)
	s := newWatched(downstreamSubs)
	b.addGlobex(t, "watch", s) // as instance "watch-1"

	updates := make(chan string, 4)
	subscriber := b.connectWith(t, "cid", "globex", clientOptions{version: sessionVersion}, &mcp.ClientOptions{
		ResourceUpdatedHandler: func(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) { updates <- req.Params.URI },
	})
	bystander := make(chan string, 4)
	b.connectWith(t, "cid", "globex", clientOptions{version: sessionVersion}, &mcp.ClientOptions{
		ResourceUpdatedHandler: func(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) { bystander <- req.Params.URI },
	})
	if !subscriber.InitializeResult().Capabilities.Resources.Subscribe {
		t.Error("subscribe capability not declared")
	}
	if err := subscriber.Subscribe(t.Context(), &mcp.SubscribeParams{URI: "test://watched"}); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, downstreamSubs); got != "subscribe test://watched" {
		t.Fatalf("downstream got %q", got)
	}
	if err := s.ResourceUpdated(t.Context(), &mcp.ResourceUpdatedNotificationParams{URI: "test://watched"}); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, updates); got != "test://watched" {
		t.Errorf("update for %q", got)
	}

	// The instance restarts, with a new session: the next request to it renews the subscription there,
	// and only updates from the new session are passed on.
	b.backend.add(t, Instance{ID: "watch-1", InstallationID: "inst-watch", TeamID: teamGlobex, UserID: userCid,
		ServerSlug: "watch", Prefix: "watch", Online: true, Status: "online"}, s)
	if _, err := subscriber.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "test://watched"}); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, downstreamSubs); got != "subscribe test://watched" {
		t.Fatalf("after the restart the downstream got %q", got)
	}
	if err := s.ResourceUpdated(t.Context(), &mcp.ResourceUpdatedNotificationParams{URI: "test://watched"}); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, updates); got != "test://watched" {
		t.Errorf("update for %q", got)
	}
	select {
	case uri := <-updates:
		t.Errorf("an update for %s came twice", uri)
	case <-time.After(100 * time.Millisecond):
	}

	// A session that subscribed and went away without unsubscribing does not keep the instance subscribed.
	leaver := b.connect(t, "cid", "globex", clientOptions{version: sessionVersion})
	if err := leaver.Subscribe(t.Context(), &mcp.SubscribeParams{URI: "test://watched"}); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, downstreamSubs); got != "subscribe test://watched" {
		t.Fatalf("downstream got %q", got)
	}
	leaver.Close()

	if err := subscriber.Unsubscribe(t.Context(), &mcp.UnsubscribeParams{URI: "test://watched"}); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, downstreamSubs); got != "unsubscribe test://watched" {
		t.Errorf("downstream got %q", got)
	}
	select {
	case uri := <-bystander:
		t.Errorf("a session that did not subscribe was told of %s", uri)
	default:
	}
	if err := subscriber.Subscribe(t.Context(), &mcp.SubscribeParams{URI: "test://unknown"}); err == nil {
		t.Error("subscribed to a resource nobody serves")
	}
}

// receive waits for a value, failing the test after a while.
func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("nothing received")
		panic("unreachable")
	}
}
