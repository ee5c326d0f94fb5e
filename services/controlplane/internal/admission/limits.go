package admission

import (
	"github.com/orrery/orrery/gen/orrery/admin/v1/adminv1connect"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	"github.com/orrery/orrery/gen/orrery/satellite/v1/satellitev1connect"
)

// Read limits of one request message, after decompression.
const (
	// DefaultMaxBytes bounds a message of every procedure that MaxBytes does not name. By the size rules in
	// their protos the largest valid request of most procedures is a few KiB; 1 MiB refuses none of them.
	DefaultMaxBytes = 1 << 20
	// AnonymousMaxBytes bounds a message of a procedure anyone may call: signing in, registering a
	// satellite, health checks and reflection. Their largest valid request, carrying a password or a
	// registration token of up to 1024 characters, stays under 8 KiB even with every character escaped in
	// JSON.
	AnonymousMaxBytes = 16 << 10
)

// maxBytes names the procedures whose largest valid request, by the size rules in their protos, does not
// fit DefaultMaxBytes. Each limit is that size in the protobuf encoding, with room for JSON's.
var maxBytes = map[string]int64{
	// 100 args of 4 KiB, and arg values, env, headers and query parameters of 100 values of 8 KiB each:
	// 3.7 MiB.
	apiv1connect.InstallationServiceCreateInstallationProcedure: 4 << 20,
	apiv1connect.InstallationServiceUpdateInstallationProcedure: 4 << 20,
	// Four maps of 100 values of 8 KiB: 3.3 MiB.
	apiv1connect.InstallationServiceSetUserConfigurationProcedure: 4 << 20,
	// A template's args, env, headers and query parameters (2.9 MiB) and a config schema of 400 fields
	// with descriptions of 2000 characters and defaults of 8 KiB (4.1 MiB): 7 MiB.
	apiv1connect.CatalogServiceCreateCatalogEntryProcedure: 8 << 20,
	apiv1connect.CatalogServiceUpdateCatalogEntryProcedure: 8 << 20,
	// A server.json document of up to 1 MiB, which JSON may send with its quotes and newlines escaped.
	apiv1connect.CatalogServiceImportServerJsonProcedure: 4 << 20,
	// A source archive of up to 16 MiB, which JSON sends in base64: 21.4 MiB.
	apiv1connect.CatalogServiceUploadSourceArchiveProcedure: 24 << 20,
	// Up to 10,000 process reports of about 420 bytes and 10,000 process counts: 4.7 MiB.
	satellitev1connect.SatelliteServiceHeartbeatProcedure: 8 << 20,
	// A poll may carry a heartbeat (above) beside its two small fields.
	satellitev1connect.SatelliteServicePollCommandsProcedure: 8 << 20,
	// The proto allows 500 events, some of them (tool lists, request logs) unbounded. Satellites send
	// batches of at most 20 events and 4 MiB (events.DefaultMaxBatchBytes), a request log carrying two
	// bodies of at most 64 KiB; a single event larger than this limit is refused, and the satellite counts
	// it as dropped.
	satellitev1connect.SatelliteServiceEmitEventsProcedure: 8 << 20,
	// A piece of a satellite release of 1 MiB, which JSON sends in base64: 1.4 MiB.
	adminv1connect.AdminServiceUploadSatelliteReleaseChunkProcedure: 2 << 20,
}

// MaxBytes is the read limit of procedure's request messages, after decompression: DefaultMaxBytes unless
// the procedure's protos allow larger requests. A Gate lowers it to AnonymousMaxBytes for a procedure
// anyone may call.
func MaxBytes(procedure string) int64 {
	if n, ok := maxBytes[procedure]; ok {
		return n
	}
	return DefaultMaxBytes
}
