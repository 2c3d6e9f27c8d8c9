package keys_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"go.yaml.in/yaml/v3"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/internal/testtool"
	"github.com/nixdeploy/nixdeploy/keys"
)

// sopsBin finds the real sops: on PATH, or where go install puts it
// (.ci/run installs it there).
func sopsBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("sops"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, "go", "bin", "sops")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	testtool.Missing(t, "sops is not installed (go install github.com/getsops/sops/v3/cmd/sops@v3.13.3)")
	return ""
}

// realSops is a fleet whose secrets file the real sops encrypted, with an
// admin identity of its own.
type realSops struct {
	cfg      *nixdeploy.Config
	store    *keys.Store
	sops     string
	adminKey string // path of the admin's age identity file
}

func newRealSops(t *testing.T, extra string) *realSops {
	t.Helper()
	bin := sopsBin(t)
	admin, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	toml := strings.Replace(fleetTOML, "age17044m9wgakla6pzftf4srtl3h5mcsr85jysgt5fg23zpnta8sfdqhzn452", admin.Recipient().String(), 1)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "secrets"), 0o755)
	path := filepath.Join(dir, "nixdeploy.toml")
	writeFile(t, path, []byte(toml+extra), 0o644)
	cfg, err := nixdeploy.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	r := &realSops{cfg: cfg, store: keys.NewStore(cfg.Keys.Dir, nil), sops: bin, adminKey: filepath.Join(dir, "admin.agekey")}
	writeFile(t, r.adminKey, []byte(admin.String()+"\n"), 0o600)
	initFleet(t, cfg, r.store)
	data, err := keys.SopsConfig(cfg, r.store)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.WriteSopsConfig(cfg.Secrets.SopsConfig, data); err != nil {
		t.Fatal(err)
	}
	return r
}

// plaintext is the secrets file before encryption: every host's user age
// key plus values of each type sops knows, a list, and an unencrypted one,
// so the MAC covers all of sops's value encodings.
func (r *realSops) plaintext(t *testing.T, override map[string]string) []byte {
	t.Helper()
	tmpl, err := keys.SecretsTemplate(r.store, "michael", hostNames(r.cfg))
	if err != nil {
		t.Fatal(err)
	}
	out := string(tmpl)
	for name, v := range override {
		lines := strings.Split(out, "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, "    "+name+": ") {
				lines[i] = "    " + name + ": " + v
			}
		}
		out = strings.Join(lines, "\n")
	}
	return []byte(out + "# a comment\nwifi:\n    psk: hunter22\n    channel: 11\nratio: 1.50\nenabled: true\nempty: ''\nlist:\n    - a\n    - 2\nnote_unencrypted: visible\n")
}

// encrypt runs sops encrypt as the operator would, with .sops.yaml named.
func (r *realSops) encrypt(t *testing.T, sopsConfig string, plain []byte) {
	t.Helper()
	cmd := exec.Command(r.sops, "--config", sopsConfig, "encrypt", "--filename-override", r.cfg.Secrets.File, "--input-type", "yaml", "--output-type", "yaml", "/dev/stdin")
	cmd.Stdin = bytes.NewReader(plain)
	cmd.Env = append(os.Environ(), "SOPS_AGE_KEY_FILE="+r.adminKey)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("sops encrypt: %v\n%s", err, errb.String())
	}
	writeFile(t, r.cfg.Secrets.File, out.Bytes(), 0o644)
}

func (r *realSops) check(t *testing.T) *keys.Report {
	t.Helper()
	rep, err := keys.Check(t.Context(), r.cfg, r.store, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func wantOnly(t *testing.T, rep *keys.Report, want ...string) {
	t.Helper()
	got := rep.Failures()
	if len(got) != len(want) {
		t.Fatalf("failures:\n%s\nwant %d matching %q", strings.Join(got, "\n"), len(want), want)
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("failure %d = %q, want it to contain %q", i, got[i], w)
		}
	}
}

func TestCheckDecryptsAsHostFlat(t *testing.T) {
	r := newRealSops(t, "")
	r.encrypt(t, r.cfg.Secrets.SopsConfig, r.plaintext(t, nil))
	if f, err := os.ReadFile(r.cfg.Secrets.File); err != nil || !bytes.Contains(f, []byte("\n    age:\n")) {
		t.Fatalf("sops did not write the flat form:\n%s", f)
	}
	rep := r.check(t)
	wantOnly(t, rep)
	for _, row := range rep.Rows {
		for _, c := range []keys.CheckName{keys.CheckRecipient, keys.CheckDecrypt, keys.CheckUserKey} {
			if row.Results[c].Status != keys.Pass {
				t.Errorf("%s %s: %v, want pass", row.Host, c, row.Results[c].Status)
			}
		}
	}

	// The reader agrees with sops about every value.
	f, err := keys.OpenSopsFile(r.cfg.Secrets.File)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := r.store.HostPrivateKey("ganon")
	if err != nil {
		t.Fatal(err)
	}
	id, err := keys.SSHAgeIdentity(pem)
	if err != nil {
		t.Fatal(err)
	}
	key, err := f.DataKey(id)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.Value(key, "wifi", "psk"); err != nil || got != "hunter22" {
		t.Errorf("wifi/psk = %q, %v", got, err)
	}
	if _, err := f.Value(key, "wifi", "channel"); err == nil {
		t.Error("an int read as a string")
	}
	other, _ := age.GenerateX25519Identity()
	if _, err := f.DataKey(other); !errors.Is(err, keys.ErrNotEncryptedTo) {
		t.Errorf("DataKey(stranger) = %v, want ErrNotEncryptedTo", err)
	}
}

func TestCheckDecryptRefusesWrongUserKey(t *testing.T) {
	r := newRealSops(t, "")
	rk1, err := r.store.UserIdentity("rk1-node1")
	if err != nil {
		t.Fatal(err)
	}
	r.encrypt(t, r.cfg.Secrets.SopsConfig, r.plaintext(t, map[string]string{
		"michael-ganon":     rk1.String(),
		"michael-rk1-node2": "not-a-key",
	}))
	wantOnly(t, r.check(t),
		"ganon: user-age-keys/michael-ganon in "+r.cfg.Secrets.File+" holds rk1-node1's user age key ("+rk1.Recipient().String()+"), not the host's user age key",
		"rk1-node2: user-age-keys/michael-rk1-node2 in "+r.cfg.Secrets.File+" is not an age identity",
	)
}

func TestCheckDecryptMACMismatch(t *testing.T) {
	r := newRealSops(t, "")
	r.encrypt(t, r.cfg.Secrets.SopsConfig, r.plaintext(t, nil))
	data := readFile(t, r.cfg.Secrets.File)
	edited := bytes.Replace(data, []byte("note_unencrypted: visible"), []byte("note_unencrypted: edited"), 1)
	if bytes.Equal(edited, data) {
		t.Fatal("no unencrypted value to edit")
	}
	writeFile(t, r.cfg.Secrets.File, edited, 0o644)
	rep := r.check(t)
	if len(rep.Failures()) != 3 {
		t.Fatalf("failures: %q, want one per host", rep.Failures())
	}
	for _, f := range rep.Failures() {
		if !strings.Contains(f, "MAC mismatch: the values do not match the stored MAC") {
			t.Errorf("failure %q, want a MAC mismatch", f)
		}
	}
	// Reordering two encrypted values is an edit too: each value is bound
	// to its path, so it no longer decrypts.
	writeFile(t, r.cfg.Secrets.File, swapValues(t, data, "ratio", "enabled"), 0o644)
	for _, f := range r.check(t).Failures() {
		if !strings.Contains(f, "MAC mismatch: ratio does not decrypt") {
			t.Errorf("failure %q, want ratio's value refused", f)
		}
	}
}

func swapValues(t *testing.T, data []byte, a, b string) []byte {
	t.Helper()
	lines := strings.Split(string(data), "\n")
	ia, ib := -1, -1
	for i, l := range lines {
		if strings.HasPrefix(l, a+": ") {
			ia = i
		}
		if strings.HasPrefix(l, b+": ") {
			ib = i
		}
	}
	if ia < 0 || ib < 0 {
		t.Fatalf("no %s or %s in\n%s", a, b, data)
	}
	va, vb := strings.TrimPrefix(lines[ia], a+": "), strings.TrimPrefix(lines[ib], b+": ")
	lines[ia], lines[ib] = a+": "+vb, b+": "+va
	return []byte(strings.Join(lines, "\n"))
}

// keyGroupsConfig puts the admin and ganon in both of two key groups and
// rk1-node1 and rk1-node2 in the first only, with a threshold of 2: ganon
// can combine both shares on its own, the RK1 nodes cannot.
func keyGroupsConfig(t *testing.T, r *realSops) string {
	t.Helper()
	rec := func(h string) string {
		s, err := r.store.HostAgeRecipient(h)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	admin := r.cfg.Secrets.AdminRecipients[0]
	conf := "creation_rules:\n  - path_regex: secrets\\.yaml$\n    shamir_threshold: 2\n    key_groups:\n" +
		"      - age:\n          - " + admin + "\n          - " + rec("ganon") + "\n          - " + rec("rk1-node1") + "\n          - " + rec("rk1-node2") + "\n" +
		"      - age:\n          - " + admin + "\n          - " + rec("ganon") + "\n"
	p := filepath.Join(filepath.Dir(r.cfg.Secrets.File), "groups.sops.yaml")
	writeFile(t, p, []byte(conf), 0o644)
	return p
}

func TestCheckDecryptKeyGroups(t *testing.T) {
	r := newRealSops(t, "")
	r.encrypt(t, keyGroupsConfig(t, r), r.plaintext(t, nil))
	data := readFile(t, r.cfg.Secrets.File)
	if !bytes.Contains(data, []byte("key_groups:")) || !bytes.Contains(data, []byte("shamir_threshold: 2")) {
		t.Fatalf("sops did not write key groups:\n%s", data)
	}
	rep := r.check(t)
	// .sops.yaml (the generated one) still lists every host; the secrets
	// file's key groups are what decide.
	wantOnly(t, rep,
		"rk1-node1: the host alone cannot decrypt "+r.cfg.Secrets.File+": the data key is split into 2 key groups with shamir_threshold 2, and this key opens 1 of them",
		"rk1-node2: the host alone cannot decrypt",
	)
	for _, row := range rep.Rows {
		if row.Host == "ganon" && (row.Results[keys.CheckDecrypt].Status != keys.Pass || row.Results[keys.CheckUserKey].Status != keys.Pass) {
			t.Errorf("ganon holds both shares and should decrypt: %+v", row.Results)
		}
	}
}

// TestCheckDecryptEntryForAnotherKey: an age entry labelled with the host's
// recipient but encrypted to another key (here: a copy of the admin's) is
// caught by decrypting, not by reading labels.
func TestCheckDecryptEntryForAnotherKey(t *testing.T) {
	r := newRealSops(t, "")
	r.encrypt(t, r.cfg.Secrets.SopsConfig, r.plaintext(t, nil))
	// Edit the metadata as a node tree: the MAC depends on the order of
	// the values, which a round trip through a map would sort.
	var doc yaml.Node
	if err := yaml.Unmarshal(readFile(t, r.cfg.Secrets.File), &doc); err != nil {
		t.Fatal(err)
	}
	ganon, _ := r.store.HostAgeRecipient("ganon")
	field := func(m *yaml.Node, k string) *yaml.Node {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == k {
				return m.Content[i+1]
			}
		}
		t.Fatalf("no %s", k)
		return nil
	}
	entries := field(field(doc.Content[0], "sops"), "age").Content
	var adminEnc string
	for _, e := range entries {
		if field(e, "recipient").Value == r.cfg.Secrets.AdminRecipients[0] {
			adminEnc = field(e, "enc").Value
		}
	}
	for _, e := range entries {
		if field(e, "recipient").Value == ganon {
			field(e, "enc").Value = adminEnc
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, r.cfg.Secrets.File, out, 0o644)
	wantOnly(t, r.check(t), "ganon: the host's key opens none of "+r.cfg.Secrets.File+"'s age entries (its recipient is listed, but the entry was encrypted to another key); run sops --config "+r.cfg.Secrets.SopsConfig+" updatekeys -y "+r.cfg.Secrets.File)
}

func TestOpenSopsFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ name, data, want string }{
		{"not encrypted", "user-age-keys:\n    michael-ganon: AGE-SECRET-KEY-1X\n", "has no sops metadata; is it encrypted?"},
		{"a list", "- a\n- b\n", "is not a YAML mapping"},
		{"two documents", "a: 1\nsops: {}\n---\nb: 2\n", "holds several YAML documents"},
		{"bad YAML", "a: [\n", "is not valid YAML: line"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".yaml")
			writeFile(t, p, []byte(tt.data), 0o644)
			_, err := keys.OpenSopsFile(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "AGE-SECRET-KEY") {
				t.Errorf("error quotes the file: %v", err)
			}
		})
	}
}
