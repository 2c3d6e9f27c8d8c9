package keys_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/nixdeploy/nixdeploy/keys"
)

func TestSopsConfig(t *testing.T) {
	cfg := newFleet(t, "")
	store := keys.NewStore(cfg.Keys.Dir, nil)
	initFleet(t, cfg, store)

	data, err := keys.SopsConfig(cfg, store)
	if err != nil {
		t.Fatal(err)
	}
	again, err := keys.SopsConfig(cfg, store)
	if err != nil || !bytes.Equal(data, again) {
		t.Fatalf("output is not deterministic (%v)", err)
	}
	text := string(data)
	for _, anchor := range []string{"&admin_michael", "&host_ganon", "&host_rk1_node1", "&host_rk1_node2", "*host_rk1_node2"} {
		if !strings.Contains(text, anchor) {
			t.Errorf("output lacks %s:\n%s", anchor, text)
		}
	}
	if strings.Index(text, "&host_ganon") > strings.Index(text, "&host_rk1_node1") {
		t.Errorf("hosts are not in fleet order:\n%s", text)
	}

	// Parse it back with a real YAML parser: the aliases must resolve to the
	// recipients, in order.
	var doc struct {
		Keys          []string `yaml:"keys"`
		CreationRules []struct {
			PathRegex string `yaml:"path_regex"`
			KeyGroups []struct {
				Age []string `yaml:"age"`
			} `yaml:"key_groups"`
		} `yaml:"creation_rules"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("output is not YAML: %v\n%s", err, text)
	}
	want := []string{cfg.Secrets.AdminRecipients[0]}
	for _, h := range hostNames(cfg) {
		r, err := store.HostAgeRecipient(h)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, r)
	}
	if !slices.Equal(doc.Keys, want) {
		t.Errorf("keys = %v, want %v", doc.Keys, want)
	}
	if len(doc.CreationRules) != 1 || len(doc.CreationRules[0].KeyGroups) != 1 {
		t.Fatalf("creation_rules = %+v", doc.CreationRules)
	}
	rule := doc.CreationRules[0]
	if rule.PathRegex != `secrets\.yaml$` {
		t.Errorf("path_regex = %q", rule.PathRegex)
	}
	if !slices.Equal(rule.KeyGroups[0].Age, want) {
		t.Errorf("key group = %v, want %v", rule.KeyGroups[0].Age, want)
	}

	// And our own reader finds every recipient for the secrets file.
	path := filepath.Join(cfg.Dir, "secrets", ".sops.yaml")
	changed, err := keys.WriteSopsConfig(path, data)
	if err != nil || !changed {
		t.Fatalf("WriteSopsConfig = %v, %v", changed, err)
	}
	if changed, err := keys.WriteSopsConfig(path, data); err != nil || changed {
		t.Errorf("rewriting the same content: changed=%v err=%v", changed, err)
	}
	set, err := keys.SopsConfigRecipients(path, cfg.Secrets.File)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range want {
		if !set[r] {
			t.Errorf("SopsConfigRecipients lacks %s", r)
		}
	}
}

func TestSopsConfigAdminAnchors(t *testing.T) {
	cfg := newFleet(t, "")
	cfg.Secrets.AdminRecipients = append(cfg.Secrets.AdminRecipients, "age1hjm3aujg9e79f5yth8a2cejzdjg5n9vnu96l05p70uvfpeltnpms7yy3pp")
	store := keys.NewStore(cfg.Keys.Dir, nil)
	initFleet(t, cfg, store)
	data, err := keys.SopsConfig(cfg, store)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"&admin_1 ", "&admin_2 ", "*admin_1\n", "*admin_2\n"} {
		if !bytes.Contains(data, []byte(a)) {
			t.Errorf("output lacks %q:\n%s", a, data)
		}
	}
}

func TestSopsConfigMissingPub(t *testing.T) {
	cfg := newFleet(t, "")
	store := keys.NewStore(cfg.Keys.Dir, nil)
	initFleet(t, cfg, store)
	os.Remove(store.HostPubPath("rk1-node2"))
	_, err := keys.SopsConfig(cfg, store)
	if err == nil || !strings.Contains(err.Error(), "rk1-node2") || !strings.Contains(err.Error(), "keys init") {
		t.Errorf("err = %v, want one naming rk1-node2 and keys init", err)
	}
}

// TestSopsConfigRecipientsForms reads .sops.yaml files written the ways
// people write them by hand.
func TestSopsConfigRecipientsForms(t *testing.T) {
	const r1, r2, r3 = "age1aaa", "age1bbb", "age1ccc"
	tests := []struct {
		name string
		yaml string
		file string
		want []string
	}{
		{"comma string", `
creation_rules:
  - path_regex: secrets\.yaml$
    age: "age1aaa, age1bbb"
`, "secrets.yaml", []string{r1, r2}},
		{"folded comma string with anchors", `
keys:
  - &admin age1aaa
  - &host_ganon age1bbb
creation_rules:
  - path_regex: secrets.yaml$
    age: >-
      age1aaa,
      age1bbb
`, "secrets.yaml", []string{r1, r2}},
		{"key groups with aliases, 4-space indent", `
keys:
    - &admin_michael age1aaa
    - &host_ganon age1bbb
creation_rules:
    - path_regex: secrets/[^/]+\.yaml$
      key_groups:
          - age:
                - *admin_michael
          - age:
                - *host_ganon
                - age1ccc
`, "secrets/secrets.yaml", []string{r1, r2, r3}},
		{"first matching rule wins", `
creation_rules:
  - path_regex: other\.yaml$
    age: age1ccc
  - path_regex: secrets\.yaml$
    age: age1aaa
  - age: age1bbb
`, "secrets.yaml", []string{r1}},
		{"rule without path_regex matches all", `
creation_rules:
  - age: age1bbb
`, "anything.yaml", []string{r2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, ".sops.yaml")
			writeFile(t, path, []byte(tt.yaml), 0o644)
			set, err := keys.SopsConfigRecipients(path, filepath.Join(dir, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for r := range set {
				got = append(got, r)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("recipients = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSopsConfigRecipientsNoRule(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ".sops.yaml")
	writeFile(t, path, []byte("creation_rules:\n  - path_regex: other\\.yaml$\n    age: age1aaa\n"), 0o644)
	_, err := keys.SopsConfigRecipients(path, filepath.Join(dir, "secrets.yaml"))
	if err == nil || !strings.Contains(err.Error(), "no creation rule") {
		t.Errorf("err = %v, want no creation rule", err)
	}
}

func TestSecretsTemplate(t *testing.T) {
	cfg := newFleet(t, "")
	store := keys.NewStore(cfg.Keys.Dir, nil)
	initFleet(t, cfg, store)
	data, err := keys.SecretsTemplate(store, "michael", hostNames(cfg))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		UserAgeKeys map[string]string `yaml:"user-age-keys"`
		Password    *string           `yaml:"michael-password"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	// nix/modules/nixos/sops.nix reads michael-password (neededForUsers);
	// the template's "!" locks the password until the operator sets one.
	if doc.Password == nil || *doc.Password != "!" {
		t.Errorf("michael-password = %v, want a locked hash \"!\"", doc.Password)
	}
	for _, h := range hostNames(cfg) {
		id, err := store.UserIdentity(h)
		if err != nil {
			t.Fatal(err)
		}
		if got := doc.UserAgeKeys["michael-"+h]; got != id.String() {
			t.Errorf("%s: entry does not hold the host's user identity", h)
		}
	}
}
