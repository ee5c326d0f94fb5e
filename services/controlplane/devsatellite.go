package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	"github.com/orrery/orrery/gen/orrery/admin/v1/adminv1connect"
	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
)

type devSatellite struct {
	url  string
	done chan struct{}
}

func (d *devSatellite) wait() { <-d.done }

// startDevSatellite registers and runs a satellite beside a development control plane. It asks for the
// registration token through the AdminService, as an operator would, and stops the satellite with the
// control plane.
func startDevSatellite(ctx context.Context, logger *slog.Logger, cfg config, baseURL string) (*devSatellite, error) {
	if err := waitReady(ctx, baseURL); err != nil {
		return nil, err
	}
	admin := adminv1connect.NewAdminServiceClient(http.DefaultClient, baseURL)
	req := connect.NewRequest(&adminv1.CreateRegistrationTokenRequest{
		Name: "development satellite", Scope: adminv1.TokenScope_TOKEN_SCOPE_GLOBAL, Ttl: durationpb.New(time.Hour),
	})
	req.Header().Set("Authorization", "Bearer "+cfg.AdminToken)
	resp, err := admin.CreateRegistrationToken(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("create development registration token: %w", err)
	}
	stateDir, err := filepath.Abs(filepath.Join(cfg.DataDir, "satellite"))
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, cfg.DevSatellite)
	cmd.Env = append(os.Environ(),
		"ORRERY_CONTROL_PLANE_URL="+baseURL,
		"ORRERY_REGISTRATION_TOKEN="+resp.Msg.Token,
		"ORRERY_STATE_DIR="+stateDir,
		"ORRERY_SATELLITE_NAME=dev-satellite",
		"ORRERY_SATELLITE_LISTEN="+cfg.DevSatelliteListen,
		"ORRERY_LOG_FORMAT="+cfg.LogFormat,
		// A global satellite runs servers unisolated only in a development setup, which this is: on a machine
		// without bubblewrap it would refuse to start otherwise.
		"ORRERY_DEV=true",
	)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// The satellite must not outlive the control plane, even if the control plane is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start development satellite %s: %w", cfg.DevSatellite, err)
	}
	d := &devSatellite{url: "http://" + cfg.DevSatelliteListen, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		if err := cmd.Wait(); err != nil && ctx.Err() == nil {
			logger.Error("development satellite exited", "error", err)
		}
	}()
	return d, nil
}

// devConsoleUser is the account development mode makes for signing in to the console.
const devConsoleUser = "dev@localhost"

// createDevConsoleUser makes dev@localhost, a global admin, through the UserService as an operator would;
// on later starts it exists already.
func createDevConsoleUser(ctx context.Context, cfg config, baseURL string) error {
	users := apiv1connect.NewUserServiceClient(http.DefaultClient, baseURL)
	req := connect.NewRequest(&apiv1.CreateUserRequest{
		Email: devConsoleUser, Name: "Developer", Password: cfg.ConsolePassword, GlobalRole: apiv1.GlobalRole_GLOBAL_ROLE_ADMIN,
	})
	req.Header().Set("Authorization", "Bearer "+cfg.AdminToken)
	if _, err := users.CreateUser(ctx, req); err != nil && connect.CodeOf(err) != connect.CodeAlreadyExists {
		return fmt.Errorf("create the console's development user: %w", err)
	}
	return nil
}

func waitReady(ctx context.Context, baseURL string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(baseURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("control plane at %s did not become ready", baseURL)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func printDevSummary(cfg config, controlPlaneURL, satelliteURL string) {
	fmt.Printf(`
Orrery is running.
  console         %[1]s/   (sign in as %[5]s, password %[6]s)
  control plane   %[1]s   (REST under /api/, described at /openapi.json; Connect, gRPC and gRPC-Web; /healthz /readyz /metrics)
  satellite       %[2]s   (/healthz /readyz)
  database        private PostgreSQL in %[3]s/postgres
  admin token     %[4]s   (API token of admin@localhost, kept in %[3]s/dev-secrets.json)

Try:
  curl -H "Authorization: Bearer %[4]s" %[1]s/api/satellites
  curl %[1]s/openapi.json

Stop with Ctrl-C.
`, controlPlaneURL, satelliteURL, cfg.DataDir, cfg.AdminToken, devConsoleUser, cfg.ConsolePassword)
}
