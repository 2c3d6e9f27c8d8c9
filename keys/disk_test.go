package keys_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/keys"
)

func TestNewDiskKey(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		k, err := keys.NewDiskKey()
		if err != nil {
			t.Fatal(err)
		}
		s := string(k)
		groups := strings.Split(s, " ")
		if len(groups) != 6 || len(s) != 35 {
			t.Fatalf("disk key %q: want six groups of five", s)
		}
		for _, g := range groups {
			if len(g) != 5 || strings.Trim(g, "23456789abcdefghijkmnpqrstuvwx") != "" {
				t.Fatalf("group %q has characters outside the typeable alphabet", g)
			}
		}
		if seen[s] {
			t.Fatalf("disk key %q repeated", s)
		}
		seen[s] = true
	}
}

// TestInitHostsInitrdKeyOpenSSHAccepts: the initrd host key is a key pair
// OpenSSH reads, and a different one from the host key; only hosts that
// need them get a disk key and an initrd key.
func TestInitHostsInitrdKeyOpenSSHAccepts(t *testing.T) {
	cfg := newFleet(t, "")
	cfg.Hosts[0].DiskKey = "/tmp/secret.key"
	cfg.Hosts[0].InitrdSSH = &nixdeploy.InitrdSSH{Port: 2222, HostKeyPath: nixdeploy.DefaultInitrdHostKeyPath}
	store := keys.NewStore(cfg.Keys.Dir, nil)
	changes, err := store.InitHosts(t.Context(), cfg.Hosts)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if c.Err != nil {
			t.Fatal(c.Err)
		}
	}
	initrd := store.InitrdKeyPath("ganon")
	pub := runTool(t, nil, "ssh-keygen", "-y", "-f", initrd)
	if !bytes.HasPrefix(readFile(t, initrd+".pub"), bytes.TrimSpace(pub)) {
		t.Errorf("ssh-keygen -y gives %q, the .pub holds %q", pub, readFile(t, initrd+".pub"))
	}
	if bytes.Equal(readFile(t, initrd+".pub")[:60], readFile(t, store.HostPubPath("ganon"))[:60]) {
		t.Error("the initrd key is the host key")
	}
	if _, err := store.InitrdHostPublicKey("ganon"); err != nil {
		t.Error(err)
	}
	if k, err := store.DiskKey("ganon"); err != nil || len(k) != 35 {
		t.Errorf("DiskKey = %q, %v", k, err)
	}
	for _, p := range []string{store.DiskKeyPath("rk1-node1"), store.InitrdKeyPath("rk1-node1")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists for a host without LUKS or initrd_ssh", p)
		}
	}
}

func TestSetDiskKeyKeepsTheSealedForm(t *testing.T) {
	cfg := newFleet(t, "")
	id, _ := botIdentity(t)
	store := keys.NewStore(cfg.Keys.Dir, []age.Identity{id})
	initFleet(t, cfg, store)
	if _, err := store.Seal(t.Context(), "ganon", []age.Recipient{id.Recipient()}); err != nil {
		t.Fatal(err)
	}
	// No disk key yet, and the host key is sealed: the new key is sealed.
	ch, err := store.SetDiskKey("ganon", []byte("my passphrase\n"), []age.Recipient{id.Recipient()})
	if err != nil || ch.Path != store.DiskKeyPath("ganon")+".age" {
		t.Fatalf("SetDiskKey = %+v, %v; want the sealed form", ch, err)
	}
	if _, err := os.Stat(store.DiskKeyPath("ganon")); !os.IsNotExist(err) {
		t.Errorf("plaintext disk key written: %v", err)
	}
	got, err := store.DiskKey("ganon")
	if err != nil || !bytes.Equal(got, []byte("my passphrase")) {
		t.Errorf("DiskKey = %q, %v", got, err)
	}
	if _, err := store.SetDiskKey("ganon", []byte("\n"), []age.Recipient{id.Recipient()}); err == nil {
		t.Error("an empty passphrase was accepted")
	}
	if _, err := store.SetDiskKey("ganon", []byte("two\nlines"), []age.Recipient{id.Recipient()}); err == nil {
		t.Error("a two-line passphrase was accepted")
	}
}
