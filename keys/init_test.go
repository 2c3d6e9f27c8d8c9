package keys_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/nixdeploy/nixdeploy/keys"
)

func TestInitCreatesKeysOpenSSHAccepts(t *testing.T) {
	cfg := newFleet(t, "")
	store := keys.NewStore(cfg.Keys.Dir, nil)
	store.Now = func() time.Time { return time.Date(2026, 11, 26, 22, 42, 57, 0, time.UTC) }
	changes, err := store.Init(t.Context(), hostNames(cfg))
	if err != nil {
		t.Fatal(err)
	}
	// The directory, then three files per host.
	if len(changes) != 1+3*len(cfg.Hosts) {
		t.Fatalf("%d changes, want %d: %+v", len(changes), 1+3*len(cfg.Hosts), changes)
	}
	for _, c := range changes {
		if c.Err != nil || c.Action != "created" {
			t.Errorf("%s: %s %v, want created", c.Path, c.Action, c.Err)
		}
	}
	assertMode(t, cfg.Keys.Dir, 0o700)
	for _, h := range hostNames(cfg) {
		key := store.HostKeyPath(h)
		assertMode(t, key, 0o600)
		assertMode(t, key+".pub", 0o644)
		assertMode(t, store.UserKeyPath(h), 0o600)

		pub := readFile(t, key+".pub")
		if !strings.HasPrefix(string(pub), "ssh-ed25519 AAAA") || !strings.HasSuffix(string(pub), " root@"+h+"\n") {
			t.Errorf("%s.pub = %q", key, pub)
		}
		// ssh-keygen -y prints the public key without its comment.
		derived := runTool(t, nil, "ssh-keygen", "-y", "-f", key)
		if got, want := fields2(derived), fields2(pub); got != want {
			t.Errorf("ssh-keygen -y = %q, want %q", got, want)
		}

		user := string(readFile(t, store.UserKeyPath(h)))
		lines := strings.Split(strings.TrimSpace(user), "\n")
		id, err := store.UserIdentity(h)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"# created: 2026-11-26T22:42:57Z", "# public key: " + id.Recipient().String(), id.String()}
		if strings.Join(lines, "\n") != strings.Join(want, "\n") {
			t.Errorf("user key file = %q", user)
		}
	}
}

// fields2 is a key line's type and base64, without the comment.
func fields2(line []byte) string {
	f := strings.Fields(string(line))
	if len(f) < 2 {
		return string(line)
	}
	return f[0] + " " + f[1]
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %04o, want %04o", path, got, want)
	}
}

func TestInitIsIdempotent(t *testing.T) {
	cfg := newFleet(t, "")
	store := keys.NewStore(cfg.Keys.Dir, nil)
	initFleet(t, cfg, store)
	before := snapshot(t, cfg.Keys.Dir)

	changes, err := store.Init(t.Context(), hostNames(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 3*len(cfg.Hosts) {
		t.Errorf("%d changes on the second run, want %d", len(changes), 3*len(cfg.Hosts))
	}
	for _, c := range changes {
		if c.Action != "unchanged" || c.Err != nil {
			t.Errorf("second run: %s %s %v", c.Path, c.Action, c.Err)
		}
	}
	if after := snapshot(t, cfg.Keys.Dir); after != before {
		t.Errorf("second run changed the directory:\nbefore %s\nafter  %s", before, after)
	}
}

// snapshot describes every file's name, size, mode, mtime and content hash.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		data := readFile(t, filepath.Join(dir, e.Name()))
		b.WriteString(e.Name() + " " + fi.Mode().String() + " " + fi.ModTime().String() + " " + string(data) + "|")
	}
	return b.String()
}

func TestInitKeepsExistingKeys(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, s *keys.Store)
		wantPub string // action for ganon's .pub
		wantErr string // error for ganon's key
	}{
		{"private without pub derives pub", func(t *testing.T, s *keys.Store) {
			os.Remove(s.HostPubPath("ganon"))
		}, "derived", ""},
		{"sealed private without pub derives pub", func(t *testing.T, s *keys.Store) {
			id, _ := botIdentity(t)
			s.Identities = []age.Identity{id}
			if _, err := s.Seal(t.Context(), "ganon", []age.Recipient{id.Recipient()}); err != nil {
				t.Fatal(err)
			}
			os.Remove(s.HostPubPath("ganon"))
		}, "derived", ""},
		{"pub without private is an error", func(t *testing.T, s *keys.Store) {
			os.Remove(s.HostKeyPath("ganon"))
		}, "", "exists without its private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := newFleet(t, "")
			store := keys.NewStore(cfg.Keys.Dir, nil)
			initFleet(t, cfg, store)
			origPub := readFile(t, store.HostPubPath("ganon"))
			tt.setup(t, store)

			changes, err := store.Init(t.Context(), []string{"ganon"})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]keys.Change{}
			for _, c := range changes {
				got[filepath.Base(c.Path)] = c
			}
			if tt.wantErr != "" {
				c := got["ganon_ssh_host_ed25519_key"]
				if c.Err == nil || !strings.Contains(c.Err.Error(), tt.wantErr) {
					t.Errorf("key change = %+v, want error %q", c, tt.wantErr)
				}
				if !bytes.Equal(readFile(t, store.HostPubPath("ganon")), origPub) {
					t.Error(".pub was replaced")
				}
				return
			}
			if c := got["ganon_ssh_host_ed25519_key.pub"]; c.Action != tt.wantPub || c.Err != nil {
				t.Errorf(".pub change = %+v, want %s", c, tt.wantPub)
			}
			if !bytes.Equal(readFile(t, store.HostPubPath("ganon")), origPub) {
				t.Errorf("derived .pub = %q, want %q", readFile(t, store.HostPubPath("ganon")), origPub)
			}
			assertMode(t, store.HostPubPath("ganon"), 0o644)
		})
	}
}

// TestInitConcurrent runs Init many times at once: exactly one key pair per
// host must win, and every .pub must match its private key.
func TestInitConcurrent(t *testing.T) {
	cfg := newFleet(t, "")
	store := keys.NewStore(cfg.Keys.Dir, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			changes, err := store.Init(t.Context(), hostNames(cfg))
			if err != nil {
				errs <- err
			}
			for _, c := range changes {
				if c.Err != nil {
					errs <- c.Err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, h := range hostNames(cfg) {
		signer, err := store.HostSigner(h)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := store.HostPublicKey(h)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(signer.PublicKey().Marshal(), pub.Marshal()) {
			t.Errorf("%s: .pub does not match the private key", h)
		}
	}
	ents, _ := os.ReadDir(cfg.Keys.Dir)
	if len(ents) != 3*len(cfg.Hosts) {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("key dir holds %v; temporary files left behind?", names)
	}
}
