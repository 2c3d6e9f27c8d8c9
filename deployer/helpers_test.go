package deployer_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/sshlab"
	"github.com/nixdeploy/nixdeploy/runs"
)

// The store the deployer writes is the real database.
var _ deployer.Store = (*db.DB)(nil)

// env is a lab, a database and a deployer wired to them.
type env struct {
	t    testing.TB
	lab  *sshlab.Lab
	cfg  *nixdeploy.Config
	db   *db.DB
	d    *deployer.Deployer
	sink *recSink
	opts deployer.Options
	// dbPath is the database file, for a test that restarts.
	dbPath string
}

type envConfig struct {
	lab sshlab.Options
	// toml is appended to the lab's fleet config.
	toml string
	// cfg edits the loaded config.
	cfg func(*nixdeploy.Config)
	// opts edits the deployer options.
	opts func(*deployer.Options)
}

func newEnv(t testing.TB, ec envConfig) *env {
	t.Helper()
	lab := sshlab.New(t, ec.lab)
	cfg := lab.Config(ec.toml)
	if ec.cfg != nil {
		ec.cfg(cfg)
	}
	dbPath := filepath.Join(t.TempDir(), "nixdeploy.db")
	store, interrupted, err := db.Open(t.Context(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(interrupted) > 0 {
		t.Fatal("fresh database has interrupted deployments")
	}
	t.Cleanup(func() { store.Close() })
	e := &env{t: t, lab: lab, cfg: cfg, db: store, sink: &recSink{}, dbPath: dbPath}
	e.opts = deployer.Options{
		Config:            cfg,
		Store:             store,
		HostKeys:          lab.HostKeys(),
		ClientKey:         lab.Client,
		ConnectTimeout:    5 * time.Second,
		KeepaliveInterval: time.Second,
		RebootGrace:       -1,
		WaitBackoff:       20 * time.Millisecond,
		KillGrace:         2 * time.Second,
		Timeouts: deployer.Timeouts{
			Command: 20 * time.Second,
			Install: time.Minute,
			Rebuild: time.Minute,
			WaitSSH: 20 * time.Second,
			Verify:  20 * time.Second,
		},
	}
	if ec.opts != nil {
		ec.opts(&e.opts)
	}
	e.d, err = deployer.New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// run runs action on hosts with the env's sink plus extra sinks.
func (e *env) run(ctx context.Context, action nixdeploy.Action, hosts []string, sinks ...deployer.Sink) (*nixdeploy.Deployment, *deployer.Report, error) {
	dep := &nixdeploy.Deployment{Hosts: hosts, Action: action, Requester: "test", Source: nixdeploy.SourceCLI}
	rep, err := runs.New(e.db, e.d).Run(ctx, dep, append([]deployer.Sink{e.sink}, sinks...)...)
	return dep, rep, err
}

// stored returns the deployment as the database has it.
func (e *env) stored(id int64) nixdeploy.Deployment {
	e.t.Helper()
	d, err := e.db.Deployment(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

func (e *env) steps(id int64) []nixdeploy.StepResult {
	e.t.Helper()
	s, err := e.db.Steps(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func stepNames(steps []nixdeploy.StepResult) string {
	var n []string
	for _, s := range steps {
		n = append(n, s.Name)
	}
	return strings.Join(n, " ")
}

// storedLog reads a deployment's whole log from the database.
func (e *env) storedLog(id int64) []nixdeploy.LogLine {
	e.t.Helper()
	var out []nixdeploy.LogLine
	if err := e.db.EachLog(e.t.Context(), id, func(l nixdeploy.LogLine) error {
		out = append(out, l)
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// recSink records lines and can wait for one.
type recSink struct {
	mu    sync.Mutex
	lines []nixdeploy.LogLine
}

func (s *recSink) Line(l nixdeploy.LogLine) {
	s.mu.Lock()
	s.lines = append(s.lines, l)
	s.mu.Unlock()
}

func (s *recSink) all() []nixdeploy.LogLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]nixdeploy.LogLine(nil), s.lines...)
}

func (s *recSink) text() string {
	var b strings.Builder
	for _, l := range s.all() {
		b.WriteString(l.Text + "\n")
	}
	return b.String()
}

// checkSeq checks that lines are numbered 1, 2, 3, … with no gap.
func checkSeq(t *testing.T, what string, lines []nixdeploy.LogLine) {
	t.Helper()
	for i, l := range lines {
		if l.Seq != int64(i+1) {
			t.Fatalf("%s: line %d has seq %d", what, i, l.Seq)
		}
	}
}

// notCalled fails when any stub ran on host or for host.
func notCalled(t *testing.T, lab *sshlab.Lab, host string) {
	t.Helper()
	for _, c := range lab.Calls() {
		if strings.Contains(c, " "+host+" ") || strings.Contains(c, "#"+host+"]") || strings.Contains(c, "@"+lab.Target(host).Host+"]") {
			t.Errorf("stub touched %s: %s", host, c)
		}
	}
}

// noBadCalls fails when a stub rejected its arguments or files.
func noBadCalls(t *testing.T, lab *sshlab.Lab) {
	t.Helper()
	for _, c := range lab.Calls() {
		if strings.HasPrefix(c, "BAD ") {
			t.Errorf("stub rejected its input: %s", c)
		}
	}
}

func pidFrom(t *testing.T, s string) int {
	t.Helper()
	var pid int
	for _, r := range s {
		if r < '0' || r > '9' {
			t.Fatalf("bad pid %q", s)
		}
		pid = pid*10 + int(r-'0')
	}
	return pid
}

// wrongKeys hands out a key nobody holds for one host.
type wrongKeys struct {
	deployer.HostKeys
	host string
	key  ssh.PublicKey
}

func (w wrongKeys) HostPublicKey(host string) (ssh.PublicKey, error) {
	if host == w.host {
		return w.key, nil
	}
	return w.HostKeys.HostPublicKey(host)
}

func asStepError(t *testing.T, err error) *deployer.StepError {
	t.Helper()
	var se *deployer.StepError
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *StepError", err, err)
	}
	return se
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
