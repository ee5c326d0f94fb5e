package gateway

import (
	"context"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// complete forwards completion/complete to the instance behind the reference: a prompt by its public
// name, a resource template by its URI template (or a resource by its URI). The downstream request names
// the prompt as the instance knows it.
func (us *userServer) complete(ctx context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	ref := req.Params.Ref
	var rt route
	var ok bool
	switch ref.Type {
	case "ref/prompt":
		us.syncMu.Lock()
		var r registered
		r, ok = us.prompts[ref.Name]
		us.syncMu.Unlock()
		rt = r.rt
	case "ref/resource":
		us.syncMu.Lock()
		var r registered
		if r, ok = us.templates[ref.URI]; !ok {
			r, ok = us.resources[ref.URI]
		}
		us.syncMu.Unlock()
		rt = r.rt
	}
	if !ok {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "unknown completion reference"}
	}
	cs, done, err := us.g.open(ctx, us, rt, req.Session)
	if err != nil {
		return nil, err
	}
	defer done()
	params := *req.Params
	params.Meta = forwardMeta(req.Params.Meta)
	downRef := *ref
	if ref.Type == "ref/prompt" {
		downRef.Name = rt.name
	}
	params.Ref = &downRef
	res, err := cs.Complete(ctx, &params)
	if err != nil {
		return nil, us.g.downstreamError(ctx, rt, err)
	}
	return res, nil
}
