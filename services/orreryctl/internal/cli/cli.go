// Package cli is orreryctl's command tree: the control plane's API from a terminal, for people and
// scripts, built on the generated Connect clients.
//
// Main runs one command line and returns its exit code (see exitcodes.go); everything it needs from the
// process comes in through an App, so tests run it in-process as well as through the built binary.
package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
)

// App is what a command line runs with.
type App struct {
	In       io.Reader
	Out, Err io.Writer
	// Getenv reads the environment (ORRERY_TOKEN, ORRERY_URL, ORRERY_CONTEXT).
	Getenv func(string) string
	// ConfigPath is the configuration file; empty means config.DefaultPath.
	ConfigPath string
	// HTTPClient makes every request. Default: a client without timeout, since streams run long.
	HTTPClient *http.Client
	// OpenBrowser opens a link for login; nil opens none.
	OpenBrowser func(string) error
	// Interactive reports whether a person is at the terminal, to prompt them and show progress.
	Interactive bool

	stdinReader *bufio.Reader

	// Global flags.
	contextName, server, token, output string
	noInput                            bool
}

// NewApp returns an App for this process: its standard streams, environment and browser.
func NewApp() *App {
	return &App{
		In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Getenv: os.Getenv, HTTPClient: http.DefaultClient,
		OpenBrowser: openBrowser, Interactive: isTerminal(os.Stdin) && isTerminal(os.Stderr),
	}
}

// Main runs args and returns the exit code, printing any error to a.Err with what to do about it.
func (a *App) Main(ctx context.Context, args []string) int {
	if a.HTTPClient == nil {
		a.HTTPClient = http.DefaultClient
	}
	if a.Getenv == nil {
		a.Getenv = func(string) string { return "" }
	}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(a.In)
	root.SetOut(a.Out)
	root.SetErr(a.Err)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code, msg := classify(err)
	fmt.Fprintln(a.Err, "error: "+msg)
	return code
}

func (a *App) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "orreryctl",
		Short: "Manage Orrery teams, MCP servers and satellites from the terminal",
		Long: `orreryctl drives an Orrery control plane: teams and members, the MCP server catalog, installations
and their instances, OAuth clients, satellites and the audit log.

Sign in once with 'orreryctl login URL'; the sign-in is kept in the user configuration directory
(orrery/config.json, readable by you alone) as a named context. Scripts pass a personal API token with
--token or ORRERY_TOKEN, and the control plane with --server or ORRERY_URL.

` + exitCodeHelp,
		Example: `  orreryctl login https://orrery.example.com
  orreryctl login https://orrery.example.com --device     # no browser on this machine
  orreryctl teams list
  orreryctl catalog list -o json
  orreryctl install everything --team platform --wait
  orreryctl logs everything --team platform --follow
  orreryctl connect vscode --team platform --write`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		DisableAutoGenTag: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.contextName, "context", "", "the named context (control plane and sign-in) to use; default the current one (ORRERY_CONTEXT)")
	pf.StringVar(&a.server, "server", "", "the control plane's URL, instead of the context's (ORRERY_URL)")
	pf.StringVar(&a.token, "token", "", "a personal API token to use instead of the context's sign-in (ORRERY_TOKEN); prefer the variable, which stays out of the process list")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table, json or yaml")
	pf.BoolVar(&a.noInput, "no-input", false, "never prompt; fail instead when a value is missing")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	_ = root.RegisterFlagCompletionFunc("context", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		f, err := a.loadConfig()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return f.Names(), cobra.ShellCompDirectiveNoFileComp
	})
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		switch a.output {
		case "table", "json", "yaml":
			return nil
		}
		return usageError{fmt.Errorf("unknown output format %q: use table, json or yaml", a.output)}
	}

	root.AddGroup(&cobra.Group{ID: "auth", Title: "Signing in:"}, &cobra.Group{ID: "team", Title: "Teams and MCP servers:"},
		&cobra.Group{ID: "admin", Title: "Administration:"})
	for _, c := range []*cobra.Command{a.loginCommand(), a.logoutCommand(), a.contextsCommand(), a.whoamiCommand()} {
		c.GroupID = "auth"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.teamsCommand(), a.catalogCommand(), a.installCommand(), a.installationsCommand(),
		a.toolsCommand(), a.uninstallCommand(), a.configCommand(), a.historyCommand(), a.stopCommand(), a.accountCommand(),
		a.instancesCommand(), a.logsCommand(), a.requestsCommand(), a.connectCommand()} {
		c.GroupID = "team"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.oauthCommand(), a.satellitesCommand(), a.policiesCommand(), a.auditCommand(), a.webhooksCommand(),
		a.accessReviewCommand()} {
		c.GroupID = "admin"
		root.AddCommand(c)
	}
	return root
}

// args wraps a cobra argument check so a wrong count is a usage error.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(c *cobra.Command, a []string) error {
		if err := check(c, a); err != nil {
			return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
		}
		return nil
	}
}

func openBrowser(u string) error {
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	if _, err := exec.LookPath(name); err != nil {
		return errors.New("no " + name + " on this machine")
	}
	return exec.Command(name, u).Start()
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (a *App) env(name string) string { return strings.TrimSpace(a.Getenv(name)) }
