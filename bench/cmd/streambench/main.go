// Command streambench is the nixdeploy side of row 1 of bench/run: one
// deployment, run the way `nixdeploy serve` runs it (the bot, the real
// deployer over SSH, the SQLite store), with a Slack that accepts and drops
// everything, including the complete log uploaded at the end. It runs as a
// process of its own so that its peak RSS is nixdeploy's alone, not a test
// harness's, and prints one JSON object:
//
//	{"step_seconds": …, "lines": …, "deploy_seconds": …, "upload_bytes": …, "vmhwm_kib": …}
//
// step_seconds is the named step's duration as the deployer recorded it;
// vmhwm_kib is the peak resident set size from /proc/self/status.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/gc"
	"github.com/nixdeploy/nixdeploy/keys"
)

type result struct {
	StepSeconds float64 `json:"step_seconds"`
	// StepEnded is when the step ended, in Unix ns: the bench times the
	// stream from the stub's first printed byte to here.
	StepEnded     int64   `json:"step_ended_unix_nano"`
	Lines         int64   `json:"lines"`
	DeploySeconds float64 `json:"deploy_seconds"`
	UploadBytes   int64   `json:"upload_bytes"`
	VmHWMKiB      int64   `json:"vmhwm_kib"`
}

func main() {
	// As nixdeploy's own main does.
	gc.Tune(os.Getenv)
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "streambench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("streambench", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "fleet config `file`")
	keyPath := fs.String("ssh-key", "", "the bot's SSH private key `file`")
	dbPath := fs.String("db", "", "database `file` (created)")
	host := fs.String("host", "", "the host to switch")
	step := fs.String("step", "nixos-rebuild", "the step to time")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to `file`")
	memProfile := fs.String("memprofile", "", "write an allocation profile to `file` at the end")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *memProfile != "" {
		defer func() {
			if f, err := os.Create(*memProfile); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	if *cfgPath == "" || *keyPath == "" || *dbPath == "" || *host == "" {
		return errors.New("-config, -ssh-key, -db and -host are required")
	}
	cfg, err := nixdeploy.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	ks, err := keys.OpenStore(cfg)
	if err != nil {
		return err
	}
	client, err := deployer.LoadClientKey(*keyPath)
	if err != nil {
		return err
	}
	store, _, err := db.Open(ctx, *dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
	quiet := slog.New(slog.DiscardHandler)
	d, err := deployer.New(deployer.Options{Config: cfg, Store: store, HostKeys: ks, ClientKey: client, Logger: quiet})
	if err != nil {
		return err
	}
	chat := &nullChat{}
	b, err := bot.New(bot.Options{Config: cfg, Store: store, Chat: chat, Deployer: d, Logger: quiet})
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Start(ctx); err != nil {
		return err
	}

	start := time.Now()
	dep, err := b.Deploy(ctx, nixdeploy.Request{Action: nixdeploy.ActionSwitch, Hosts: []string{*host}, Requester: "streambench", Source: nixdeploy.SourceCLI})
	if err != nil {
		return err
	}
	took := time.Since(start)
	if dep.State != nixdeploy.StateSucceeded {
		return fmt.Errorf("deployment %d %s: %s", dep.ID, dep.State, dep.Error)
	}
	if chat.uploaded == 0 {
		return fmt.Errorf("deployment %d: the log was not uploaded", dep.ID)
	}
	res := result{DeploySeconds: took.Seconds(), UploadBytes: chat.uploaded}
	steps, err := store.Steps(ctx, dep.ID)
	if err != nil {
		return err
	}
	for _, s := range steps {
		if s.Name == *step {
			res.StepSeconds = s.EndedAt.Sub(s.StartedAt).Seconds()
			res.StepEnded = s.EndedAt.UnixNano()
		}
	}
	if res.StepSeconds == 0 {
		return fmt.Errorf("deployment %d has no step %s", dep.ID, *step)
	}
	if res.Lines, err = store.LogCount(ctx, dep.ID); err != nil {
		return err
	}
	if res.VmHWMKiB, err = vmHWM(); err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(res)
}

// nullChat is a Slack that answers at once and keeps nothing. It reads
// every uploaded file to its end, as Slack would, so the read-back of the
// stored log counts towards the time and memory of the run.
type nullChat struct {
	n        int
	uploaded int64
}

func (c *nullChat) Post(context.Context, string, bot.Message) (string, error) {
	c.n++
	return "1732662000." + strconv.Itoa(100000+c.n), nil
}
func (c *nullChat) Update(context.Context, string, string, bot.Message) error    { return nil }
func (c *nullChat) Ephemeral(context.Context, string, string, bot.Message) error { return nil }
func (c *nullChat) React(context.Context, string, string, string) error          { return nil }
func (c *nullChat) Upload(ctx context.Context, _ string, _ string, f bot.File) error {
	r, err := f.Open(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return err
	}
	if n != f.Size {
		return fmt.Errorf("upload %s: read %d bytes, announced %d", f.Name, n, f.Size)
	}
	c.uploaded = n
	return nil
}

// vmHWM is the process's peak resident set size in KiB.
func vmHWM() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmHWM:")); ok {
			v = bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))
			return strconv.ParseInt(string(v), 10, 64)
		}
	}
	return 0, errors.New("no VmHWM in /proc/self/status")
}
