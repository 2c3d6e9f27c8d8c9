package keys_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy/keys"
)

// botIdentity returns a fresh age identity and the path of its age-keygen
// style file.
func botIdentity(t *testing.T) (*age.X25519Identity, string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "bot.agekey")
	writeFile(t, p, keys.FormatAgeIdentity(id, "2026-11-26T22:42:57Z"), 0o600)
	return id, p
}

func TestSealRoundTrip(t *testing.T) {
	cfg := newFleet(t, "")
	id, _ := botIdentity(t)
	store := keys.NewStore(cfg.Keys.Dir, []age.Identity{id})
	initFleet(t, cfg, store)

	keyPath := store.HostKeyPath("ganon")
	wantPEM := readFile(t, keyPath)
	wantUser, err := store.UserIdentity("ganon")
	if err != nil {
		t.Fatal(err)
	}

	changes, err := store.Seal(t.Context(), "ganon", []age.Recipient{id.Recipient()})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if c.Err != nil || c.Action != "sealed" {
			t.Errorf("%s: %s %v, want sealed", c.Path, c.Action, c.Err)
		}
	}
	for _, p := range []string{keyPath, store.UserKeyPath("ganon")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("plaintext %s still exists (%v)", p, err)
		}
		fi, err := os.Stat(p + keys.SealedSuffix)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %o, want 600", p+keys.SealedSuffix, fi.Mode().Perm())
		}
	}

	got, err := store.HostPrivateKey("ganon")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, wantPEM) {
		t.Error("HostPrivateKey from .age differs from the original key")
	}
	signer, err := store.HostSigner("ganon")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := store.HostPublicKey("ganon")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(signer.PublicKey().Marshal(), pub.Marshal()) {
		t.Error("HostSigner's key differs from the .pub")
	}
	user, err := store.UserIdentity("ganon")
	if err != nil {
		t.Fatal(err)
	}
	if user.String() != wantUser.String() {
		t.Error("UserIdentity from .age differs from the original")
	}

	// Sealing again is a no-op.
	changes, err = store.Seal(t.Context(), "ganon", []age.Recipient{id.Recipient()})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if c.Action != "unchanged" {
			t.Errorf("second seal: %s %s %v", c.Path, c.Action, c.Err)
		}
	}
}

// TestSealKeepsPlaintextWhenBotCannotDecrypt: sealing only to someone else's
// recipient would lock the bot out, so the plaintext must survive.
func TestSealKeepsPlaintextWhenBotCannotDecrypt(t *testing.T) {
	cfg := newFleet(t, "")
	id, _ := botIdentity(t)
	other, _ := botIdentity(t)
	store := keys.NewStore(cfg.Keys.Dir, []age.Identity{id})
	initFleet(t, cfg, store)

	changes, err := store.Seal(t.Context(), "ganon", []age.Recipient{other.Recipient()})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if c.Err == nil {
			t.Errorf("%s: sealed to a foreign recipient without error", c.Path)
		}
	}
	for _, p := range []string{store.HostKeyPath("ganon"), store.UserKeyPath("ganon")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("plaintext lost: %v", err)
		}
		if _, err := os.Stat(p + keys.SealedSuffix); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("undecryptable %s left behind", p+keys.SealedSuffix)
		}
	}
}

// TestSealedFileOpensWithAgeCLI: what the store writes is a normal age file.
func TestSealedFileOpensWithAgeCLI(t *testing.T) {
	requireTool(t, "age")
	cfg := newFleet(t, "")
	id, idPath := botIdentity(t)
	store := keys.NewStore(cfg.Keys.Dir, []age.Identity{id})
	initFleet(t, cfg, store)
	want := readFile(t, store.HostKeyPath("rk1-node1"))
	if _, err := store.Seal(t.Context(), "rk1-node1", []age.Recipient{id.Recipient()}); err != nil {
		t.Fatal(err)
	}
	got := runTool(t, nil, "age", "-d", "-i", idPath, store.HostKeyPath("rk1-node1")+keys.SealedSuffix)
	if !bytes.Equal(got, want) {
		t.Error("age -d output differs from the original key")
	}
}

// TestStoreReadsAgeCLIFiles: keys sealed by hand with the age CLI, binary or
// armored, are read by the store.
func TestStoreReadsAgeCLIFiles(t *testing.T) {
	requireTool(t, "age")
	tests := []struct {
		name  string
		armor bool
	}{{"binary", false}, {"armored", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			id, _ := botIdentity(t)
			keyPath := sshKeygen(t, dir, "ganon_ssh_host_ed25519_key", "ed25519")
			want := readFile(t, keyPath)
			args := []string{"-r", id.Recipient().String(), "-o", keyPath + ".age"}
			if tt.armor {
				args = append(args, "-a")
			}
			runTool(t, want, "age", args...)
			if err := os.Remove(keyPath); err != nil {
				t.Fatal(err)
			}
			store := keys.NewStore(dir, []age.Identity{id})
			got, err := store.HostPrivateKey("ganon")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Error("key read from the age CLI's file differs")
			}
		})
	}
}

func TestHostPrivateKeyErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, store *keys.Store)
		ids   bool
		want  string
	}{
		{"missing", func(t *testing.T, s *keys.Store) {
			os.Remove(s.HostKeyPath("ganon"))
		}, true, "key not found"},
		{"group readable", func(t *testing.T, s *keys.Store) {
			os.Chmod(s.HostKeyPath("ganon"), 0o640)
		}, true, "readable by group/others (mode 0640); run chmod 600"},
		{"sealed without identity", func(t *testing.T, s *keys.Store) {
			id, _ := botIdentity(t)
			s.Identities = []age.Identity{id}
			if _, err := s.Seal(t.Context(), "ganon", []age.Recipient{id.Recipient()}); err != nil {
				t.Fatal(err)
			}
			s.Identities = nil
		}, false, "no age identity configured"},
		{"both forms", func(t *testing.T, s *keys.Store) {
			writeFile(t, s.HostKeyPath("ganon")+".age", []byte("stale"), 0o600)
		}, true, "both"},
		{"not a key", func(t *testing.T, s *keys.Store) {
			writeFile(t, s.HostKeyPath("ganon"), []byte("hello\n"), 0o600)
		}, true, "ssh: no key found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := newFleet(t, "")
			store := keys.NewStore(cfg.Keys.Dir, nil)
			initFleet(t, cfg, store)
			tt.setup(t, store)
			_, err := store.HostPrivateKey("ganon")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestOpenStoreIdentity(t *testing.T) {
	id, idPath := botIdentity(t)
	tests := []struct {
		name    string
		env     string
		file    string
		wantIDs int
		wantErr string
	}{
		{"none", "", "", 0, ""},
		{"file", "", idPath, 1, ""},
		{"env with comments", "# bot\n# public key: x\n" + id.String() + "\n", "", 1, ""},
		{"env wins over file", id.String(), "/nonexistent", 1, ""},
		{"env garbage", "AGE-SECRET-KEY-1NOPE", "", 0, "does not hold a valid age identity"},
		{"missing file", "", "/nonexistent/bot.agekey", 0, "read age identity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := newFleet(t, "")
			cfg.Keys.AgeIdentityFile = tt.file
			if tt.env != "" {
				t.Setenv(keys.IdentityEnv, tt.env)
			}
			store, err := keys.OpenStore(cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "NOPE") {
					t.Errorf("error quotes the identity: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(store.Identities) != tt.wantIDs {
				t.Errorf("%d identities, want %d", len(store.Identities), tt.wantIDs)
			}
		})
	}
}

func TestHostPublicKey(t *testing.T) {
	cfg := newFleet(t, "")
	store := keys.NewStore(cfg.Keys.Dir, nil)
	initFleet(t, cfg, store)
	pk, err := store.HostPublicKey("ganon")
	if err != nil {
		t.Fatal(err)
	}
	if pk.Type() != ssh.KeyAlgoED25519 {
		t.Errorf("type %s", pk.Type())
	}
	if _, err := store.HostPublicKey("nope"); !errors.Is(err, keys.ErrNoKey) {
		t.Errorf("missing .pub: %v, want ErrNoKey", err)
	}
}
