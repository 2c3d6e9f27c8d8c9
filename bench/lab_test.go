package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/internal/sshlab"
)

// Environment of the benchmarks; bench/run sets them all.
const (
	// envLab names the lab.json of a running lab (see TestLab). Without
	// it every benchmark starts a lab of its own.
	envLab = "NIXDEPLOY_BENCH_LAB"
	// envLabOut makes TestLab start a lab and describe it in that file.
	envLabOut = "NIXDEPLOY_BENCH_LAB_OUT"
	// envOut is the directory that gets one table row per benchmark
	// (row1.md …); without it rows are only logged.
	envOut = "NIXDEPLOY_BENCH_OUT"
	// envStreambench and envNixdeploy are prebuilt binaries of
	// ./cmd/streambench and ../cmd/nixdeploy; without them the benchmark
	// builds its own.
	envStreambench = "NIXDEPLOY_BENCH_STREAMBENCH"
	envNixdeploy   = "NIXDEPLOY_BENCH_NIXDEPLOY"
)

// labHosts are the lab's fleet hosts, named like the example fleet's RK1
// nodes, on 127.0.0.2 … 127.0.0.5.
var labHosts = []string{"rk1-node1", "rk1-node2", "rk1-node3", "rk1-node4"}

// lab is the part of an sshlab.Lab the benchmarks use, in a form that can
// be handed from the process that runs the lab to the one that measures.
type lab struct {
	Dir           string
	ControlDir    string
	KeysDir       string
	User          string
	ClientKeyPath string
	// ConfigText is the lab's fleet config; Config appends to it.
	ConfigText string
	Runner     server
	Targets    []server
}

type server struct {
	Name        string
	Host        string
	Port        int
	HostKeyLine string
	LogPath     string
}

func labOf(l *sshlab.Lab) *lab {
	conv := func(s *sshlab.Server) server {
		return server{Name: s.Name, Host: s.Host, Port: s.Port, HostKeyLine: s.HostKeyLine, LogPath: s.LogPath()}
	}
	out := &lab{Dir: l.Dir, ControlDir: l.ControlDir, KeysDir: l.KeysDir, User: l.User,
		ClientKeyPath: l.ClientKeyPath, ConfigText: l.ConfigText(""), Runner: conv(l.Runner)}
	for _, t := range l.Targets {
		out.Targets = append(out.Targets, conv(t))
	}
	return out
}

// TestLab is how bench/run starts the lab: with NIXDEPLOY_BENCH_LAB_OUT set
// it starts the sshds, writes their description there and keeps them until
// SIGTERM or SIGINT (or until its parent dies), then stops them. Without
// the variable it does nothing.
func TestLab(t *testing.T) {
	out := os.Getenv(envLabOut)
	if out == "" {
		t.Skip(envLabOut + " is not set; bench/run starts the benchmark lab through this")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	l := sshlab.New(t, sshlab.Options{Hosts: labHosts})
	lo := labOf(l)
	b, err := json.MarshalIndent(lo, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	// For bench/paired, which is a shell script: the fleet config, and the
	// control directory and the client key as shell assignments.
	sq := func(v string) string { return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'" }
	env := "lab_config=" + sq(out+".toml") + "\nlab_control=" + sq(lo.ControlDir) + "\nlab_key=" + sq(lo.ClientKeyPath) + "\n"
	if err := os.WriteFile(out+".toml", []byte(lo.ConfigText), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out+".env", []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		t.Fatal(err)
	}
	// The script's trap stops the lab; should the script itself be
	// killed, the lab notices that it was orphaned.
	parent := os.Getppid()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for os.Getppid() == parent {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// useLab returns the lab bench/run started, or starts one for this
// benchmark alone.
func useLab(b *testing.B) *lab {
	b.Helper()
	path := os.Getenv(envLab)
	if path == "" {
		return labOf(sshlab.New(b, sshlab.Options{Hosts: labHosts}))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var l lab
	if err := json.Unmarshal(data, &l); err != nil {
		b.Fatalf("%s: %v", path, err)
	}
	return &l
}

// set writes a stub control file (see sshlab.Lab.Set) for the rest of the
// benchmark.
func (l *lab) set(b *testing.B, name, value string) {
	b.Helper()
	p := filepath.Join(l.ControlDir, name)
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.Remove(p) })
}

// config writes the lab's fleet config plus extra and loads it.
func (l *lab) config(b *testing.B, extra string) (*nixdeploy.Config, string) {
	b.Helper()
	p := filepath.Join(b.TempDir(), "nixdeploy.toml")
	if err := os.WriteFile(p, []byte(l.ConfigText+extra), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg, err := nixdeploy.LoadConfig(p)
	if err != nil {
		b.Fatalf("lab config: %v", err)
	}
	return cfg, p
}

func (l *lab) client(b *testing.B) ssh.Signer {
	b.Helper()
	pem, err := os.ReadFile(l.ClientKeyPath)
	if err != nil {
		b.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func (l *lab) hostKeys() sshlab.Keys { return sshlab.Keys{Dir: l.KeysDir} }

func (l *lab) target(b *testing.B, name string) server {
	b.Helper()
	for _, s := range l.Targets {
		if s.Name == name {
			return s
		}
	}
	b.Fatalf("lab has no host %s", name)
	return server{}
}

// openssh returns an OpenSSH client command for s running argv, with the
// lab's key and s's pinned host key, as a user would type it.
func (l *lab) openssh(b *testing.B, s server, argv ...string) *exec.Cmd {
	b.Helper()
	known := filepath.Join(l.Dir, "known_hosts_"+s.Name)
	line := fmt.Sprintf("[%s]:%d %s\n", s.Host, s.Port, s.HostKeyLine)
	if err := os.WriteFile(known, []byte(line), 0o644); err != nil {
		b.Fatal(err)
	}
	args := []string{"-i", l.ClientKeyPath, "-p", strconv.Itoa(s.Port),
		"-o", "UserKnownHostsFile=" + known, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		"-o", "ControlMaster=no", "-o", "ControlPath=none", "-F", "/dev/null",
		l.User + "@" + s.Host}
	return exec.Command("ssh", append(args, argv...)...)
}

// sessions counts the SSH sessions (commands) sshd started so far.
func (s server) sessions(b *testing.B) int {
	b.Helper()
	data, err := os.ReadFile(s.LogPath)
	if err != nil {
		b.Fatal(err)
	}
	return strings.Count(string(data), "Starting session: ")
}

// binary returns the prebuilt binary named by env, or builds pkg.
func binary(b *testing.B, env, pkg string) string {
	b.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	out := filepath.Join(b.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build %s: %v\n%s", pkg, err, msg)
	}
	return out
}
