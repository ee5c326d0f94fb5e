package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/release"
)

// releasesCommand publishes satellite releases for self-update and signs them with a release key, whose
// public half satellites trust through ORRERY_RELEASE_PUBLIC_KEYS.
func (a *App) releasesCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "releases",
		Short: "Signed satellite binaries that satellites update themselves to (global admins)",
		Long: `A release is a satellite binary, its SHA-256 and an Ed25519 signature by a release key. Satellites trust
the public keys in ORRERY_RELEASE_PUBLIC_KEYS and refuse anything else, so keep the private key off the
control plane: sign where the binary is built, then publish.`,
		Example: `  orreryctl satellites releases keygen --key release.key     # prints the public key for ORRERY_RELEASE_PUBLIC_KEYS
  orreryctl satellites releases publish ./orrery-satellite --version 1.5.0 --key release.key
  orreryctl satellites update --all --version 1.5.0`,
	}

	var keyFile string
	keygen := &cobra.Command{
		Use:   "keygen",
		Short: "Make a release key: the private key goes to --key, the public key is printed",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			f, err := os.OpenFile(keyFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintln(f, base64.StdEncoding.EncodeToString(priv.Seed())); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintln(a.Out, base64.StdEncoding.EncodeToString(pub))
			return nil
		},
	}
	keygen.Flags().StringVar(&keyFile, "key", "", "file to create with the private key (mode 0600)")
	_ = keygen.MarkFlagRequired("key")

	var version, platform, signature string
	describe := func(path string) (sum string, size int64, err error) {
		f, err := os.Open(path)
		if err != nil {
			return "", 0, err
		}
		defer f.Close()
		h := sha256.New()
		size, err = io.Copy(h, f)
		return hex.EncodeToString(h.Sum(nil)), size, err
	}
	signWith := func(sum string) ([]byte, error) {
		if signature != "" {
			return base64.StdEncoding.DecodeString(signature)
		}
		if keyFile == "" {
			return nil, usageError{errors.New("give --key (the release key's file) or --signature")}
		}
		raw, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, err
		}
		seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("%s does not hold a release key made by keygen", keyFile)
		}
		return release.Sign(ed25519.NewKeyFromSeed(seed), version, platform, sum), nil
	}

	sign := &cobra.Command{
		Use:   "sign BINARY",
		Short: "Print a binary's release signature (base64), to publish it elsewhere with --signature",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			sum, _, err := describe(argv[0])
			if err != nil {
				return err
			}
			sig, err := signWith(sum)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.Out, base64.StdEncoding.EncodeToString(sig))
			return nil
		},
	}

	publish := &cobra.Command{
		Use:   "publish BINARY",
		Short: "Upload a signed satellite binary as a release",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			sum, size, err := describe(argv[0])
			if err != nil {
				return err
			}
			sig, err := signWith(sum)
			if err != nil {
				return err
			}
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			created, err := s.admin().CreateSatelliteRelease(c.Context(), connect.NewRequest(&adminv1.CreateSatelliteReleaseRequest{
				Version: version, Platform: platform, Sha256: sum, Signature: sig, Size: size,
			}))
			if err != nil {
				return err
			}
			id := created.Msg.GetRelease().GetId()
			f, err := os.Open(argv[0])
			if err != nil {
				return err
			}
			defer f.Close()
			buf := make([]byte, 1<<20)
			for offset := int64(0); offset < size; {
				n, err := io.ReadFull(f, buf)
				if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
					return err
				}
				if _, err := s.admin().UploadSatelliteReleaseChunk(c.Context(), connect.NewRequest(&adminv1.UploadSatelliteReleaseChunkRequest{
					ReleaseId: id, Offset: offset, Data: buf[:n],
				})); err != nil {
					return err
				}
				offset += int64(n)
			}
			done, err := s.admin().CompleteSatelliteRelease(c.Context(), connect.NewRequest(&adminv1.CompleteSatelliteReleaseRequest{ReleaseId: id}))
			if err != nil {
				return err
			}
			return a.show(done.Msg, []string{"VERSION", "PLATFORM", "SIZE", "SHA256", "ID"},
				[][]string{releaseRow(done.Msg.GetRelease())[:5]})
		},
	}
	for _, cmd := range []*cobra.Command{sign, publish} {
		cmd.Flags().StringVar(&version, "version", "", "version the binary was built as (-X github.com/orrery/orrery/internal/buildinfo.version=...), which it reports in heartbeats")
		cmd.Flags().StringVar(&platform, "platform", release.Platform(), "GOOS/GOARCH the binary runs on")
		cmd.Flags().StringVar(&keyFile, "key", "", "release key file made by keygen")
		cmd.Flags().StringVar(&signature, "signature", "", "signature made elsewhere by sign, instead of --key")
		_ = cmd.MarkFlagRequired("version")
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List releases, newest first",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			resp, err := s.admin().ListSatelliteReleases(c.Context(), connect.NewRequest(&adminv1.ListSatelliteReleasesRequest{PageSize: 500}))
			if err != nil {
				return err
			}
			var rows [][]string
			for _, r := range resp.Msg.GetReleases() {
				rows = append(rows, releaseRow(r))
			}
			return a.show(resp.Msg, []string{"VERSION", "PLATFORM", "SIZE", "SHA256", "ID", "COMPLETE"}, rows)
		},
	}
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a release",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			_, err = s.admin().DeleteSatelliteRelease(c.Context(), connect.NewRequest(&adminv1.DeleteSatelliteReleaseRequest{ReleaseId: argv[0]}))
			return err
		},
	}
	c.AddCommand(keygen, sign, publish, list, del)
	return c
}

func releaseRow(r *adminv1.SatelliteRelease) []string {
	info := r.GetRelease()
	return []string{info.GetVersion(), info.GetPlatform(), strconv.FormatInt(info.GetSize(), 10), info.GetSha256(), r.GetId(),
		strconv.FormatBool(r.GetComplete())}
}

// updateCommand sends update commands.
func (a *App) updateCommand() *cobra.Command {
	var satellite, team, version string
	var all, downgrade bool
	var batch uint32
	c := &cobra.Command{
		Use:   "update (--satellite ID | --team TEAM | --all)",
		Short: "Make satellites update themselves to a published release (global admins)",
		Example: `  orreryctl satellites update --satellite 3f1c... --version 1.5.0
  orreryctl satellites update --all            # the newest release
  orreryctl satellites update --all --batch 2  # two at a time, each batch once the previous heartbeats on it`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			req := &adminv1.EnqueueCommandRequest{Action: &adminv1.EnqueueCommandRequest_Update{
				Update: &satellitev1.UpdateAction{Version: version, AllowDowngrade: downgrade},
			}, RollingBatchSize: batch}
			switch {
			case satellite != "":
				req.Target = &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: satellite}
			case team != "":
				_, teamID, err := s.optionalTeam(c.Context(), team)
				if err != nil {
					return err
				}
				req.Target = &adminv1.EnqueueCommandRequest_TeamId{TeamId: teamID}
			case all:
				req.Target = &adminv1.EnqueueCommandRequest_AllGlobalSatellites{AllGlobalSatellites: true}
			default:
				return usageError{errors.New("say which satellites: --satellite ID, --team TEAM or --all")}
			}
			resp, err := s.admin().EnqueueCommand(c.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			if ro := resp.Msg.GetRollout(); ro != nil {
				fmt.Fprintf(a.Err, "Rollout %s: %d satellites, %d at a time (orreryctl satellites rollouts).\n",
					ro.GetId(), len(ro.GetSatellites()), ro.GetBatchSize())
			}
			var rows [][]string
			for _, cmd := range resp.Msg.GetCommands() {
				rows = append(rows, []string{cmd.GetSatelliteId(), cmd.GetCommand().GetUpdate().GetVersion(), cmd.GetCommand().GetId()})
			}
			return a.show(resp.Msg, []string{"SATELLITE", "VERSION", "COMMAND"}, rows)
		},
	}
	c.Flags().StringVar(&satellite, "satellite", "", "the satellite's id")
	a.teamFlag(c, &team, false)
	c.Flags().BoolVar(&all, "all", false, "every global satellite")
	c.Flags().StringVar(&version, "version", "", "release version; default the newest published")
	c.Flags().BoolVar(&downgrade, "allow-downgrade", false, "let satellites install a version older than theirs")
	c.Flags().Uint32Var(&batch, "batch", 0, "rolling update: this many satellites at a time; 0 updates all at once")
	return c
}

// rolloutsCommand lists rolling updates.
func (a *App) rolloutsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rollouts",
		Short: "List rolling updates and where each satellite stands (global admins)",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			resp, err := s.admin().ListRollouts(c.Context(), connect.NewRequest(&adminv1.ListRolloutsRequest{}))
			if err != nil {
				return err
			}
			var rows [][]string
			for _, r := range resp.Msg.GetRollouts() {
				done := 0
				for _, m := range r.GetSatellites() {
					if m.GetState() == "done" {
						done++
					}
				}
				rows = append(rows, []string{r.GetVersion(), r.GetState(), fmt.Sprintf("%d/%d", done, len(r.GetSatellites())),
					strconv.FormatUint(uint64(r.GetBatchSize()), 10), ago(r.GetUpdatedAt()), r.GetError(), r.GetId()})
			}
			return a.show(resp.Msg, []string{"VERSION", "STATE", "DONE", "BATCH", "MOVED", "ERROR", "ID"}, rows)
		},
	}
}
