package keys_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"testing"

	"filippo.io/age"
	"filippo.io/age/armor"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/keys"
)

// sopsFile builds an encrypted secrets file in the layout sops 3.13 writes,
// with real cryptography: a data key in an age entry per recipient,
// ENC[AES256_GCM,…] values bound to their key path, and the MAC (see
// sopsfile.go for the format and its source). The tests in
// sopsfile_test.go use files made by the real sops; this fixture covers
// the layouts sops reads but does not write by default.
type sopsFile struct {
	recipients []string
	userKeys   []string          // names under user-age-keys
	values     map[string]string // user-age-keys values by name
	keyGroups  bool              // metadata under sops.key_groups[0].age: one group, all recipients
	indent     int               // sops writes 4; hand-edited files often have 2
	sopsFirst  bool              // metadata before the data, to prove order does not matter
	noPassword bool              // leave out michael-password
}

const fixtureLastModified = "2026-11-26T22:42:57Z"

func (f sopsFile) write(t *testing.T, path string) {
	t.Helper()
	in := strings.Repeat(" ", f.indent)
	ind := func(n int) string { return strings.Repeat(in, n) }
	dataKey := make([]byte, 32)
	rand.Read(dataKey)
	mac := sha512.New()

	var data strings.Builder
	data.WriteString("user-age-keys:\n")
	for _, k := range f.userKeys {
		v := f.values[k]
		mac.Write([]byte(v))
		fmt.Fprintf(&data, "%s%s: %s\n", ind(1), k, encValue(t, dataKey, v, "user-age-keys:"+k+":"))
	}
	mac.Write([]byte("hunter22"))
	fmt.Fprintf(&data, "wifi:\n%spsk: %s\n", ind(1), encValue(t, dataKey, "hunter22", "wifi:psk:"))
	if !f.noPassword {
		mac.Write([]byte("!"))
		fmt.Fprintf(&data, "michael-password: %s\n", encValue(t, dataKey, "!", "michael-password:"))
	}

	var meta strings.Builder
	meta.WriteString("sops:\n")
	entry := func(level int, r string) {
		dash := ind(level)
		fmt.Fprintf(&meta, "%s- recipient: %s\n%s  enc: |\n", dash, r, dash)
		for _, line := range strings.Split(strings.TrimSpace(ageArmor(t, r, dataKey)), "\n") {
			fmt.Fprintf(&meta, "%s    %s\n", dash, line)
		}
	}
	if f.keyGroups {
		fmt.Fprintf(&meta, "%skey_groups:\n", ind(1))
		fmt.Fprintf(&meta, "%s- age:\n", ind(2))
		for _, r := range f.recipients {
			entry(3, r)
		}
	} else {
		fmt.Fprintf(&meta, "%sage:\n", ind(1))
		for _, r := range f.recipients {
			entry(2, r)
		}
	}
	fmt.Fprintf(&meta, "%slastmodified: \"%s\"\n", ind(1), fixtureLastModified)
	fmt.Fprintf(&meta, "%smac: %s\n", ind(1), encValue(t, dataKey, fmt.Sprintf("%X", mac.Sum(nil)), fixtureLastModified))
	fmt.Fprintf(&meta, "%sunencrypted_suffix: _unencrypted\n", ind(1))
	fmt.Fprintf(&meta, "%sversion: 3.13.2\n", ind(1))

	out := data.String() + meta.String()
	if f.sopsFirst {
		out = meta.String() + data.String()
	}
	writeFile(t, path, []byte(out), 0o644)
}

// encValue encrypts v as sops's aes/cipher.go does.
func encValue(t *testing.T, key []byte, v, aad string) string {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCMWithNonceSize(block, 32)
	if err != nil {
		t.Fatal(err)
	}
	iv := make([]byte, 32)
	rand.Read(iv)
	out := gcm.Seal(nil, iv, []byte(v), []byte(aad))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("ENC[AES256_GCM,data:%s,iv:%s,tag:%s,type:str]", b64(out[:len(out)-16]), b64(iv), b64(out[len(out)-16:]))
}

func ageArmor(t *testing.T, recipient string, data []byte) string {
	t.Helper()
	r, err := age.ParseX25519Recipient(recipient)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	w, err := age.Encrypt(aw, r)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Close()
	aw.Close()
	return buf.String()
}

// checkEnv is a fleet with keys, a generated .sops.yaml and a secrets file
// encrypted to the admin and every host.
type checkEnv struct {
	cfg   *nixdeploy.Config
	store *keys.Store
	// secrets is the fixture the secrets file was written from; cases
	// change it and call writeSecrets again.
	secrets sopsFile
}

func newCheckEnv(t *testing.T) *checkEnv {
	t.Helper()
	cfg := newFleet(t, "")
	e := &checkEnv{cfg: cfg, store: keys.NewStore(cfg.Keys.Dir, nil)}
	initFleet(t, cfg, e.store)
	data, err := keys.SopsConfig(cfg, e.store)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.WriteSopsConfig(cfg.Secrets.SopsConfig, data); err != nil {
		t.Fatal(err)
	}
	e.secrets = sopsFile{recipients: cfg.Secrets.AdminRecipients, indent: 4, values: map[string]string{}}
	for _, h := range hostNames(cfg) {
		e.secrets.recipients = append(e.secrets.recipients, e.recipient(t, h))
		e.secrets.userKeys = append(e.secrets.userKeys, "michael-"+h)
		id, err := e.store.UserIdentity(h)
		if err != nil {
			t.Fatal(err)
		}
		e.secrets.values["michael-"+h] = id.String()
	}
	e.secrets.write(t, cfg.Secrets.File)
	return e
}

func (e *checkEnv) recipient(t *testing.T, host string) string {
	t.Helper()
	r, err := e.store.HostAgeRecipient(host)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func without(list []string, drop string) []string {
	var out []string
	for _, s := range list {
		if s != drop {
			out = append(out, s)
		}
	}
	return out
}

func TestCheckPasses(t *testing.T) {
	tests := []struct {
		name   string
		modify func(t *testing.T, e *checkEnv)
	}{
		{"sops 3.13 layout", func(t *testing.T, e *checkEnv) {}},
		{"one key group in key_groups form", func(t *testing.T, e *checkEnv) {
			e.secrets.keyGroups = true
			e.secrets.write(t, e.cfg.Secrets.File)
		}},
		{"2-space indent, metadata first", func(t *testing.T, e *checkEnv) {
			e.secrets.indent = 2
			e.secrets.sopsFirst = true
			e.secrets.write(t, e.cfg.Secrets.File)
		}},
		{"sealed keys", func(t *testing.T, e *checkEnv) {
			id, _ := botIdentity(t)
			e.store.Identities = []age.Identity{id}
			for _, h := range hostNames(e.cfg) {
				if _, err := e.store.Seal(t.Context(), h, []age.Recipient{id.Recipient()}); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"hand-written .sops.yaml with comma form", func(t *testing.T, e *checkEnv) {
			rs := strings.Join(e.secrets.recipients, ",")
			writeFile(t, e.cfg.Secrets.SopsConfig, []byte("creation_rules:\n  - path_regex: secrets\\.yaml$\n    age: "+rs+"\n"), 0o644)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newCheckEnv(t)
			tt.modify(t, e)
			rep, err := keys.Check(t.Context(), e.cfg, e.store, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() {
				t.Fatalf("check failed:\n%s", strings.Join(rep.Failures(), "\n"))
			}
			if len(rep.Rows) != 3 {
				t.Errorf("%d rows, want 3", len(rep.Rows))
			}
			for _, row := range rep.Rows {
				for _, c := range keys.Checks {
					st := row.Results[c].Status
					if c == keys.CheckDiskKey || c == keys.CheckInitrd {
						// No host of this fleet has LUKS or initrd_ssh.
						if st != keys.NotChecked {
							t.Errorf("%s %s: %v, want not checked", row.Host, c, st)
						}
						continue
					}
					if c == keys.CheckMode && tt.name == "sealed keys" {
						if st != keys.NotChecked {
							t.Errorf("%s %s: %v, want not checked for a sealed key", row.Host, c, st)
						}
						continue
					}
					if st != keys.Pass {
						t.Errorf("%s %s: %v, want pass", row.Host, c, st)
					}
				}
			}
		})
	}
}

func TestCheckFailures(t *testing.T) {
	tests := []struct {
		name   string
		modify func(t *testing.T, e *checkEnv)
		// want maps "host check" to a fragment of the reason; every other
		// check must pass or be not checked.
		want map[string]string
	}{
		{"host missing from the secrets recipients", func(t *testing.T, e *checkEnv) {
			e.secrets.recipients = without(e.secrets.recipients, e.recipient(t, "rk1-node2"))
			e.secrets.write(t, e.cfg.Secrets.File)
		}, map[string]string{"rk1-node2 recipient": "is not encrypted to the host's recipient age1"}},
		{"host missing from key-group recipients", func(t *testing.T, e *checkEnv) {
			e.secrets.keyGroups = true
			e.secrets.recipients = without(e.secrets.recipients, e.recipient(t, "ganon"))
			e.secrets.write(t, e.cfg.Secrets.File)
		}, map[string]string{"ganon recipient": "secrets/.sops.yaml updatekeys -y "}},
		{"missing user-age-keys entry", func(t *testing.T, e *checkEnv) {
			e.secrets.userKeys = without(e.secrets.userKeys, "michael-rk1-node1")
			e.secrets.write(t, e.cfg.Secrets.File)
		}, map[string]string{"rk1-node1 user-key": "has no user-age-keys/michael-rk1-node1"}},
		{"missing password hash", func(t *testing.T, e *checkEnv) {
			e.secrets.noPassword = true
			e.secrets.write(t, e.cfg.Secrets.File)
		}, map[string]string{
			"ganon password":     "has no michael-password, the password hash the host's first activation reads",
			"rk1-node1 password": "has no michael-password",
			"rk1-node2 password": "has no michael-password",
		}},
		{".pub mismatch", func(t *testing.T, e *checkEnv) {
			other := sshKeygen(t, t.TempDir(), "other", "ed25519")
			writeFile(t, e.store.HostPubPath("rk1-node1"), readFile(t, other+".pub"), 0o644)
		}, map[string]string{"rk1-node1 pub": "does not match the private key"}},
		{"0644 private key", func(t *testing.T, e *checkEnv) {
			os.Chmod(e.store.HostKeyPath("rk1-node2"), 0o644)
		}, map[string]string{"rk1-node2 mode": "private key is readable by group/others (mode 0644); run chmod 600 " + "KEYDIR/rk1-node2_ssh_host_ed25519_key"}},
		{"duplicated host key", func(t *testing.T, e *checkEnv) {
			writeFile(t, e.store.HostKeyPath("rk1-node1"), readFile(t, e.store.HostKeyPath("ganon")), 0o600)
			writeFile(t, e.store.HostPubPath("rk1-node1"), readFile(t, e.store.HostPubPath("ganon")), 0o644)
		}, map[string]string{
			"ganon unique":     "shares its host key SHA256:",
			"rk1-node1 unique": "with ganon; every host needs its own key",
		}},
		{"host missing from .sops.yaml", func(t *testing.T, e *checkEnv) {
			rs := strings.Join(without(e.secrets.recipients, e.recipient(t, "rk1-node1")), ",")
			writeFile(t, e.cfg.Secrets.SopsConfig, []byte("creation_rules:\n  - path_regex: secrets\\.yaml$\n    age: "+rs+"\n"), 0o644)
		}, map[string]string{"rk1-node1 sops-config": "is missing from"}},
		{"missing private key", func(t *testing.T, e *checkEnv) {
			os.Remove(e.store.HostKeyPath("ganon"))
		}, map[string]string{"ganon key": "no private key"}},
		{"secrets value not encrypted", func(t *testing.T, e *checkEnv) {
			data := readFile(t, e.cfg.Secrets.File)
			data = bytes.Replace(data, []byte("michael-ganon: ENC["), []byte("michael-ganon: oops["), 1)
			writeFile(t, e.cfg.Secrets.File, data, 0o644)
		}, map[string]string{
			// Every host reads the whole file, so every host fails.
			"ganon decrypt":     "MAC mismatch: user-age-keys/michael-ganon does not decrypt",
			"rk1-node1 decrypt": "MAC mismatch: user-age-keys/michael-ganon does not decrypt",
			"rk1-node2 decrypt": "MAC mismatch: user-age-keys/michael-ganon does not decrypt",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newCheckEnv(t)
			tt.modify(t, e)
			rep, err := keys.Check(t.Context(), e.cfg, e.store, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() {
				t.Fatal("check passed")
			}
			for _, row := range rep.Rows {
				for _, c := range keys.Checks {
					res := row.Results[c]
					want, ok := tt.want[row.Host+" "+string(c)]
					want = strings.ReplaceAll(want, "KEYDIR", e.cfg.Keys.Dir)
					switch {
					case ok && (res.Status != keys.Fail || !strings.Contains(res.Reason, want)):
						t.Errorf("%s %s = %v %q, want failure containing %q", row.Host, c, res.Status, res.Reason, want)
					case !ok && res.Status == keys.Fail:
						t.Errorf("%s %s failed unexpectedly: %s", row.Host, c, res.Reason)
					}
				}
			}
			for _, line := range rep.Failures() {
				host, _, _ := strings.Cut(line, ": ")
				if _, ok := e.cfg.Host(host); !ok || strings.Contains(line, "\n") {
					t.Errorf("failure line %q does not start with a host name or is not one line", line)
				}
				if strings.Contains(line, "AGE-SECRET-KEY") || strings.Contains(line, "PRIVATE KEY") {
					t.Errorf("failure line leaks key material: %q", line)
				}
			}
		})
	}
}

func TestCheckSelectsHosts(t *testing.T) {
	e := newCheckEnv(t)
	// A broken unselected host does not fail the selected ones, but a key
	// it shares with one of them does.
	os.Chmod(e.store.HostKeyPath("ganon"), 0o644)
	rep, err := keys.Check(t.Context(), e.cfg, e.store, []string{"@rk1"})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Rows) != 2 || rep.Rows[0].Host != "rk1-node1" {
		t.Fatalf("rows %+v, failures %v", rep.Rows, rep.Failures())
	}
	writeFile(t, e.store.HostPubPath("ganon"), readFile(t, e.store.HostPubPath("rk1-node2")), 0o644)
	rep, err = keys.Check(t.Context(), e.cfg, e.store, []string{"rk1-node2"})
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.Rows[0].Results[keys.CheckUnique]; got.Status != keys.Fail || !strings.Contains(got.Reason, "with ganon") {
		t.Errorf("unique = %+v, want a failure naming ganon", got)
	}

	if _, err := keys.Check(t.Context(), e.cfg, e.store, []string{"rk9-*"}); err == nil {
		t.Error("a selector matching nothing was accepted")
	}
}

func TestCheckWithoutSecretsConfigured(t *testing.T) {
	e := newCheckEnv(t)
	e.cfg.Secrets.SopsConfig, e.cfg.Secrets.File = "", ""
	rep, err := keys.Check(t.Context(), e.cfg, e.store, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatal(rep.Failures())
	}
	for _, c := range []keys.CheckName{keys.CheckSopsConfig, keys.CheckRecipient, keys.CheckUserKey} {
		if st := rep.Rows[0].Results[c].Status; st != keys.NotChecked {
			t.Errorf("%s = %v, want not checked", c, st)
		}
	}
}

func TestReportPrint(t *testing.T) {
	rep := &keys.Report{Rows: []keys.Row{
		{Host: "ganon", Results: map[keys.CheckName]keys.Result{keys.CheckKey: {Status: keys.Pass}, keys.CheckPub: {Status: keys.Fail, Reason: "x"}}},
		{Host: "rk1-node1", Results: map[keys.CheckName]keys.Result{}},
	}}
	var buf bytes.Buffer
	if err := rep.Print(&buf); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"host       key  pub  mode  unique  disk-key  initrd  sops-config  recipient  decrypt  user-key  password\n" +
		"ganon      ✓    ✗    -     -       -         -       -            -          -        -         -\n" +
		"rk1-node1  -    -    -     -       -         -       -            -          -        -         -\n"
	if buf.String() != want {
		t.Errorf("Print =\n%s\nwant\n%s", buf.String(), want)
	}
	if got := rep.Failures(); len(got) != 1 || got[0] != "ganon: x" {
		t.Errorf("Failures = %q", got)
	}
}
