package backend

import (
	"context"

	"connectrpc.com/connect"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/release"
)

// DownloadRelease fetches the piece of a release's binary at offset, with the release's description.
func (c *Communicator) DownloadRelease(ctx context.Context, version, platform string, offset int64) (release.Release, []byte, error) {
	resp, err := c.client.DownloadRelease(ctx, connect.NewRequest(&satellitev1.DownloadReleaseRequest{
		Version: version, Platform: platform, Offset: offset,
	}))
	if err != nil {
		return release.Release{}, nil, err
	}
	info := resp.Msg.GetRelease()
	return release.Release{
		Version: info.GetVersion(), Platform: info.GetPlatform(), SHA256: info.GetSha256(),
		Signature: info.GetSignature(), Size: info.GetSize(),
	}, resp.Msg.GetData(), nil
}
