// Command nixdeploy installs and rebuilds a NixOS fleet from Slack or a
// terminal. main is a thin wrapper around run so tests drive the same code.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	// Schedules name IANA zones; embed the database so a minimal image
	// without /usr/share/zoneinfo still resolves them.
	_ "time/tzdata"

	"github.com/nixdeploy/nixdeploy/internal/gc"
)

func main() {
	gc.Tune(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// stdio bundles a command's standard streams.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// command is one subcommand. run receives the arguments after the
// subcommand's name.
type command struct {
	summary string
	run     func(ctx context.Context, s stdio, args []string) error
}

// commands is filled by each subcommand's file in init-free style: the map
// literal below is the only registry.
func commands() map[string]command {
	return map[string]command{
		"check": {"validate a fleet config and print every problem", cmdCheck},
		"keys":  {"pre-generated SSH host keys and age keys (see keys -h)", cmdKeys},
		"bmc":   {"Turing Pi BMC helpers: bmc fingerprint ADDRESS prints the certificate to pin", cmdBMC},

		"serve":   {"run the Slack bot and the schedules (tokens from the environment)", cmdServe},
		"console": {"drive the bot from a terminal: commands, reactions, streamed output", cmdConsole},
		"deploy":  {"run a deployment from the terminal", cmdDeploy},
		"plan":    {"print what a deployment would run, without connecting anywhere", cmdPlan},
		"status":  {"print the drift board: what each host runs, booted and should run", cmdStatus},
		"demo":    {"the bot against a simulated fleet in this terminal: no Slack, no hardware", cmdDemo},
		"restore": {"replace the database with a backup (stop the bot first)", cmdRestore},
	}
}

// run executes nixdeploy with args (without the program name).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	s := stdio{in: stdin, out: stdout, err: stderr}
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout, cmds)
		if len(args) == 0 {
			return usageErrorf("no subcommand given")
		}
		return nil
	}
	c, ok := cmds[args[0]]
	if !ok {
		return usageErrorf("unknown subcommand %q (run nixdeploy -h for the list)", args[0])
	}
	return c.run(ctx, s, args[1:])
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: nixdeploy <subcommand> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "subcommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
}

// usageError is a bad invocation: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// exitError carries a specific exit status with an already-printed message
// (or none).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// errHelp is returned after -h printed usage: exit 0.
var errHelp = errors.New("help requested")

// flagSet is a subcommand's flags plus the usage text that -h prints.
type flagSet struct {
	*flag.FlagSet
	printUsage func()
}

// newFlags creates a flag set for a subcommand whose errors are returned,
// not printed. Only -h prints the usage, to stdout; a bad flag yields a
// one-line error and no usage dump.
func newFlags(s stdio, name, synopsis string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	// The flag package calls Usage on every parse error; keep it quiet and
	// print only when help was asked for.
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, printUsage: func() {
		fmt.Fprintf(s.out, "usage: nixdeploy %s\n", synopsis)
		fs.SetOutput(s.out)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}}
}

// parseFlags parses args into fs. -h prints usage and yields errHelp; any
// other flag error becomes a one-line usage error.
func parseFlags(fs *flagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.printUsage()
		return errHelp
	}
	if err != nil {
		return usageErrorf("%s: %v", fs.Name(), oneLine(err.Error()))
	}
	return nil
}

func oneLine(s string) string { return strings.TrimSpace(strings.SplitN(s, "\n", 2)[0]) }

// exitCode maps an error from run to an exit status, printing it once.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, errHelp) {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "nixdeploy: "+ue.msg)
		return 2
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "nixdeploy: "+ee.msg)
		}
		return ee.code
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "nixdeploy: interrupted")
		return 130
	}
	fmt.Fprintln(stderr, "nixdeploy: "+err.Error())
	return 1
}
