package server

import (
	"fmt"
	"net/http"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/orrery/orrery/gen/orrery/admin/v1/adminv1connect"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	"github.com/orrery/orrery/services/controlplane/internal/admission"
)

// restPrefix is where the REST shapes of the user-facing API are served.
const restPrefix = "/api/"

// userAPIServices are the services people and scripts call, over Connect, gRPC, gRPC-Web and REST.
var userAPIServices = []string{
	adminv1connect.AdminServiceName, adminv1connect.SingleSignOnServiceName,
	apiv1connect.AccountServiceName, apiv1connect.UserServiceName, apiv1connect.TeamServiceName,
	apiv1connect.AuditServiceName, apiv1connect.CatalogServiceName, apiv1connect.InstallationServiceName,
	apiv1connect.SecretServiceName, apiv1connect.InstanceServiceName, apiv1connect.OAuthServiceName,
	apiv1connect.UsageServiceName, apiv1connect.ToolServiceName, apiv1connect.ConfigHistoryServiceName,
	apiv1connect.EmergencyStopServiceName, apiv1connect.RemoteAccountServiceName, apiv1connect.PolicyServiceName,
	apiv1connect.AlertServiceName, apiv1connect.AccessReviewServiceName,
}

// newREST returns the handler of the REST routes (the google.api.http rules of the services' protos),
// which transcodes each request into a call of the service's Connect handler, interceptors included.
func newREST(services []*vanguard.Service) (http.Handler, error) {
	rest, err := vanguard.NewTranscoder(services,
		vanguard.WithCodec(newRESTJSON),
		vanguard.WithDefaultServiceOptions(vanguard.WithRESTUnmarshalOptions(vanguard.RESTUnmarshalOptions{
			// Vanguard answers an unknown query parameter as an internal error; like an unknown field of
			// a body, it is ignored instead.
			DiscardUnknownQueryParams: true,
		})),
	)
	if err != nil {
		return nil, fmt.Errorf("create REST transcoder: %w", err)
	}
	return rest, nil
}

// restJSON is Vanguard's JSON codec with decoding errors marked as the caller's: Vanguard would answer a
// malformed body of a route with path parameters 500. Unknown fields are ignored, as Connect's own JSON
// codec ignores them, so that clients built from newer protos keep working.
type restJSON struct{ *vanguard.JSONCodec }

func newRESTJSON(res vanguard.TypeResolver) vanguard.Codec {
	return restJSON{vanguard.NewJSONCodec(res)}
}

// Unmarshal implements vanguard.Codec.
func (c restJSON) Unmarshal(data []byte, msg proto.Message) error {
	return invalidArgument(c.JSONCodec.Unmarshal(data, msg))
}

// UnmarshalField implements vanguard.RESTCodec.
func (c restJSON) UnmarshalField(data []byte, msg proto.Message, field protoreflect.FieldDescriptor) error {
	return invalidArgument(c.JSONCodec.UnmarshalField(data, msg, field))
}

// invalidArgument marks a body that does not decode as the caller's mistake.
func invalidArgument(err error) error {
	if err == nil {
		return nil
	}
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("the request body: %w", err))
}

// restMaxBytes is the largest read limit of a procedure with a REST route.
func restMaxBytes() int64 {
	limit := int64(admission.DefaultMaxBytes)
	for _, name := range userAPIServices {
		desc, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			continue // the generated packages register every service they name
		}
		methods := desc.(protoreflect.ServiceDescriptor).Methods()
		for i := range methods.Len() {
			if proto.HasExtension(methods.Get(i).Options(), annotations.E_Http) {
				limit = max(limit, admission.MaxBytes("/"+name+"/"+string(methods.Get(i).Name())))
			}
		}
	}
	return limit
}
