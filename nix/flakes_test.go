package nix_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/internal/nixfleet"
)

// The flakes are evaluated as real flakes by the Nix that CI installs
// (Debian's nix-bin 2.8), from a throwaway git repository, with the inputs
// overridden by the stand-ins in testdata/stubs: nixpkgs' lib.nixosSystem
// returns its arguments, disko and sops-nix are marker modules, nix-secrets
// is a directory. Nothing is fetched: every input is overridden, the
// registry and substituters are off, and the store is a chroot store under
// the test's temp dir (no /nix, no daemon, any user).
//
// Nix 2.8 cannot do what the real install needs (no nixpkgs offline, and
// relative `path:` inputs behave differently from Nix >= 2.26), so module
// contents are not type-checked here; TestModules evaluates the options this
// tree sets with a stub lib, and nix/README.md lists the `nix flake check`
// commands to run with the real inputs.

// nixConfig keeps nix offline and quiet. flake-registry = "" disables the
// global registry download; substituters = "" keeps it off the network.
const nixConfig = `experimental-features = nix-command flakes
substituters =
flake-registry =
build-users-group =
warn-dirty = false
`

// layout is where the nix/ tree sits in the repository it ships in.
type layout struct {
	name string
	// sub is the tree's folder inside the repository ("" for the root).
	sub string
}

var layouts = []layout{
	{name: "nix is a subfolder", sub: "nix"},
	{name: "nix is the repository root", sub: ""},
}

// copyTree copies the nix/ tree (this directory) to dst, leaving out what
// .gitignore keeps out of a real repository.
func copyTree(t *testing.T, dst string) {
	t.Helper()
	src := nixDir(t)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if d.IsDir() && (rel == "keys" || d.Name() == ".git") || strings.HasPrefix(d.Name(), "result") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// newRepo makes a git repository holding the nix/ tree in layout l and
// returns the tree's directory, the repository and the commit. A flake in
// a git work tree sees exactly the tracked files; the commit is what the
// bot's locked flake URL names.
func newRepo(t *testing.T, l layout) (tree, repo, rev string) {
	t.Helper()
	git := requireTool(t, "git")
	repo = filepath.Join(t.TempDir(), "dots")
	tree = filepath.Join(repo, l.sub)
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	copyTree(t, tree)
	if l.sub != "" {
		// Something else in the repository, as in a dotfiles repo.
		if err := os.WriteFile(filepath.Join(repo, "flake.nix"), []byte("{ outputs = _: { }; }\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	home := t.TempDir()
	for _, args := range [][]string{
		{"init", "-q"},
		{"add", "-A"},
		{"-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "-q", "--no-gpg-sign", "-m", "nix tree"},
		{"rev-parse", "HEAD"},
	} {
		cmd := exec.CommandContext(t.Context(), git, args...)
		cmd.Dir = repo
		cmd.Env = append(cleanEnv("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CONFIG_GLOBAL"), "HOME="+home)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		rev = strings.TrimSpace(string(out))
	}
	return tree, repo, rev
}

// nixEval runs `nix eval --json FLAKE#nixosConfigurations --apply DESCRIBE`
// with every input in stubs overridden by its stand-in.
func nixEval(t *testing.T, store, flakeRef string, stubs []string) ([]byte, error) {
	t.Helper()
	bin := requireTool(t, "nix")
	describe, err := os.ReadFile(filepath.Join(nixDir(t), "testdata/describe-flakes.nix"))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--store", store, "eval", "--json", flakeRef + "#nixosConfigurations",
		"--apply", string(describe), "--no-write-lock-file"}
	for _, in := range stubs {
		args = append(args, "--override-input", in, "path:"+filepath.Join(nixDir(t), "testdata/stubs", in))
	}
	home := t.TempDir()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Env = append(cleanEnv("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"),
		"NIX_CONFIG="+nixConfig,
		"HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, "config"),
		"XDG_CACHE_HOME="+filepath.Join(home, "cache"),
		"XDG_DATA_HOME="+filepath.Join(home, "data"),
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("nix eval %s: %w\n%s", flakeRef, err, stderr.Bytes())
	}
	return out, nil
}

type luks struct {
	Name         string `json:"name"`
	PasswordFile string `json:"passwordFile"`
}

// flakeHost mirrors testdata/describe-flakes.nix.
type flakeHost struct {
	Inputs    []string `json:"inputs"`
	Files     []string `json:"files"`
	Stubs     []string `json:"stubs"`
	Systems   []string `json:"systems"`
	HostNames []string `json:"hostNames"`
	Disks     []string `json:"disks"`
	SSHPorts  []int    `json:"sshPorts"`
	InitrdSSH []struct {
		Value *nixfleet.InitrdSSH `json:"value"`
	} `json:"initrdSsh"`
	LUKS []luks `json:"luks"`
}

// splitStorePath splits a file of a flake's copied source into the source's
// store path and the file's path inside the nix/ tree.
func splitStorePath(t *testing.T, l layout, file string) (source, rel string) {
	t.Helper()
	i := strings.Index(file, "-source/")
	if i < 0 {
		t.Fatalf("%s is not in a copied flake source", file)
	}
	source, rel = file[:i+len("-source")], file[i+len("-source/"):]
	if l.sub != "" {
		var ok bool
		if rel, ok = strings.CutPrefix(rel, l.sub+"/"); !ok {
			t.Errorf("%s is outside the repository's %s/ folder", file, l.sub)
		}
	}
	return source, rel
}

var (
	mainStubs      = []string{"disko", "nix-secrets", "nixos-anywhere", "nixpkgs", "sops-nix"}
	installerStubs = []string{"disko", "nixpkgs"}
)

// TestFlakeInputs pins the inputs: the installer must not need the private
// nix-secrets repository, and nothing may reach the parent tree through an
// input (see TestFlakesBuildFleet).
func TestFlakeInputs(t *testing.T) {
	type input struct {
		URL   string `json:"url"`
		Flake bool   `json:"flake"`
	}
	var got map[string]map[string]input
	evalJSON(t, `let d = f: builtins.mapAttrs (_: i: { url = i.url or ""; flake = i.flake or true; }) (import f).inputs;
		in { main = d ./flake.nix; installer = d ./nixos-installer/flake.nix; }`, &got)
	if got, want := sortedKeys(got["main"]), mainStubs; !slices.Equal(got, want) {
		t.Errorf("flake.nix inputs = %q, want %q", got, want)
	}
	if in := got["main"]["nix-secrets"]; in.Flake || !strings.Contains(in.URL, "CHANGEME") {
		t.Errorf("nix-secrets = %+v, want a flake = false placeholder the README tells the user to replace", in)
	}
	if got, want := sortedKeys(got["installer"]), installerStubs; !slices.Equal(got, want) {
		t.Errorf("nixos-installer/flake.nix inputs = %q, want %q", got, want)
	}
}

// TestFlakesBuildFleet evaluates flake.nix and nixos-installer/flake.nix as
// flakes, in both layouts the tree ships in, and checks that for every host
// of nixdeploy.toml each flake builds it for the right platform, disk, SSH
// port, LUKS key path and initrd SSH server, from files of the flake's own
// source tree. The last point is what a `path:..` input for the parent
// breaks: Nix >= 2.26 resolves it to the repository root in the subfolder
// layout (nothing evaluates), and Nix 2.8 copies the parent directory as a
// separate, unlocked source (the installer no longer builds the revision it
// was given).
func TestFlakesBuildFleet(t *testing.T) {
	cfg := loadFleet(t)
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			tree, repo, rev := newRepo(t, l)
			store := filepath.Join(t.TempDir(), "store")
			// The bot runs the installer at a locked revision: the same
			// flake as a git URL with dir and rev.
			dir := "nixos-installer"
			if l.sub != "" {
				dir = l.sub + "/" + dir
			}
			locked := fmt.Sprintf("git+file://%s?dir=%s&rev=%s", repo, dir, rev)
			var main, inst, lockedInst map[string]flakeHost
			for _, f := range []struct {
				ref   string
				stubs []string
				into  *map[string]flakeHost
			}{
				{tree, mainStubs, &main},
				// Only nixpkgs and disko: an installer that needed nix-secrets
				// would try to fetch its git+ssh URL here and fail.
				{filepath.Join(tree, "nixos-installer"), installerStubs, &inst},
				{locked, installerStubs, &lockedInst},
			} {
				out, err := nixEval(t, store, f.ref, f.stubs)
				if err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(out, f.into); err != nil {
					t.Fatalf("decode %s: %v", out, err)
				}
			}
			checkFleetBuilds(t, l, cfg, main, inst)
			t.Run("locked installer", func(t *testing.T) {
				checkFleetBuilds(t, l, cfg, main, lockedInst)
			})
		})
	}
}

func checkFleetBuilds(t *testing.T, l layout, cfg *nixdeploy.Config, main, inst map[string]flakeHost) {
	flakeAttr := func(h nixdeploy.Host) string { return h.FlakeAttr }
	installerAttr := func(h nixdeploy.Host) string { return h.InstallerAttr }
	if got, want := sortedKeys(main), hostNames(cfg, flakeAttr); !slices.Equal(got, want) {
		t.Errorf("flake.nix nixosConfigurations = %q, nixdeploy.toml flake attrs = %q", got, want)
	}
	if got, want := sortedKeys(inst), hostNames(cfg, installerAttr); !slices.Equal(got, want) {
		t.Errorf("installer nixosConfigurations = %q, nixdeploy.toml installer attrs = %q", got, want)
	}
	for _, h := range cfg.Hosts {
		t.Run(h.Name, func(t *testing.T) {
			m, ok := main[h.FlakeAttr]
			if !ok {
				t.Fatalf("flake.nix has no nixosConfigurations.%s", h.FlakeAttr)
			}
			in, ok := inst[h.InstallerAttr]
			if !ok {
				t.Fatalf("installer has no nixosConfigurations.%s", h.InstallerAttr)
			}
			checks := []struct {
				what      string
				got, want any
			}{
				{"flake.nix platform", m.Systems, []string{h.System}},
				{"installer platform", in.Systems, []string{h.System}},
				{"flake.nix disko device", m.Disks, []string{h.Disk}},
				{"installer disko device", in.Disks, []string{h.Disk}},
				{"installer hostName", in.HostNames, []string{h.Name}},
				{"flake.nix hostSpec.sshPort", m.SSHPorts, []int{h.Port}},
				{"installer hostSpec.sshPort", in.SSHPorts, []int{h.Port}},
				{"flake.nix modules from inputs", m.Stubs, []string{"disko"}},
				{"installer modules from inputs", in.Stubs, []string{"disko"}},
			}
			for _, c := range checks {
				if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
					t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
				}
			}

			var wantLUKS []luks
			if h.DiskKey != "" {
				wantLUKS = []luks{{Name: "cryptroot", PasswordFile: h.DiskKey}}
			}
			for what, got := range map[string][]luks{"flake.nix": m.LUKS, "installer": in.LUKS} {
				if !slices.Equal(got, wantLUKS) {
					t.Errorf("%s LUKS = %+v, want %+v (disk_key %q)", what, got, wantLUKS, h.DiskKey)
				}
			}

			for what, got := range map[string]flakeHost{"flake.nix": m, "installer": in} {
				if len(got.InitrdSSH) != 1 {
					t.Errorf("%s sets hostSpec.initrdSsh %d times, want once", what, len(got.InitrdSSH))
					continue
				}
				v, want := got.InitrdSSH[0].Value, h.InitrdSSH
				switch {
				case v == nil && want == nil:
				case v == nil || want == nil:
					t.Errorf("%s hostSpec.initrdSsh = %+v, nixdeploy.toml initrd_ssh = %+v", what, v, want)
				case v.Port != want.Port || v.HostKeyPath != want.HostKeyPath:
					t.Errorf("%s hostSpec.initrdSsh = port %d, key %s; nixdeploy.toml %d, %s", what, v.Port, v.HostKeyPath, want.Port, want.HostKeyPath)
				}
			}

			// Every file comes from the one source tree Nix copied for the
			// flake (the revision it locked), at the expected place.
			sources := map[string]bool{}
			rels := func(files []string) []string {
				var r []string
				for _, f := range files {
					src, rel := splitStorePath(t, l, f)
					sources[src] = true
					r = append(r, rel)
				}
				return r
			}
			needFiles := []struct {
				what        string
				files, want []string
			}{
				{"flake.nix", rels(m.Files), []string{
					"hosts/nixos/" + h.Name + "/configuration.nix",
					"hosts/common/authorized-keys.nix",
				}},
				{"installer", rels(in.Files), []string{
					"nixos-installer/minimal-configuration.nix",
					"modules/nixos/host-spec.nix",
					"hosts/common/authorized-keys.nix",
				}},
			}
			for _, n := range needFiles {
				for _, w := range n.want {
					if !slices.Contains(n.files, w) {
						t.Errorf("%s modules for %s lack %s (have %q)", n.what, h.Name, w, n.files)
					}
				}
			}
			if len(sources) != 1 {
				t.Errorf("the flakes read %s's modules from %d source trees %v, want one: the installer must build the revision it was given", h.Name, len(sources), sortedKeys(sources))
			}

			// sops.nix reads both through specialArgs.
			for _, need := range []string{"sops-nix", "nix-secrets"} {
				if !slices.Contains(m.Inputs, need) {
					t.Errorf("flake.nix specialArgs.inputs lacks %s (have %q)", need, m.Inputs)
				}
			}
		})
	}
}
