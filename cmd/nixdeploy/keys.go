package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/keys"
)

// keysCommandOrder is the order keys -h lists the subcommands in: the order
// an operator runs them in.
var keysCommandOrder = []string{"init", "sops-config", "secrets-template", "check", "seal", "unseal", "disk-key", "age-recipient", "age-identity"}

func keysCommands() map[string]command {
	return map[string]command{
		"init":             {"create missing host, user age, disk and initrd keys (never overwrites)", cmdKeysInit},
		"sops-config":      {"write .sops.yaml with the admin and host recipients", cmdKeysSopsConfig},
		"secrets-template": {"print the user-age-keys section to pipe into sops", cmdKeysSecretsTemplate},
		"check":            {"the key preflight run before every install", cmdKeysCheck},
		"seal":             {"encrypt plaintext keys in the key store with age", cmdKeysSeal},
		"unseal":           {"write plaintext copies of a host's keys for the manual bootstrap", cmdKeysUnseal},
		"disk-key":         {"replace a LUKS host's disk key from stdin (disk-key set HOST)", cmdKeysDiskKey},
		"age-recipient":    {"print the age recipient of SSH ed25519 public keys", cmdKeysAgeRecipient},
		"age-identity":     {"print the age identity of an SSH ed25519 private key", cmdKeysAgeIdentity},
	}
}

func cmdKeys(ctx context.Context, s stdio, args []string) error {
	subs := keysCommands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(s.out, "usage: nixdeploy keys <subcommand> [flags]")
		fmt.Fprintln(s.out)
		fmt.Fprintln(s.out, "subcommands:")
		for _, n := range keysCommandOrder {
			fmt.Fprintf(s.out, "  %-17s %s\n", n, subs[n].summary)
		}
		if len(args) == 0 {
			return usageErrorf("keys: no subcommand given")
		}
		return nil
	}
	c, ok := subs[args[0]]
	if !ok {
		return usageErrorf("keys: unknown subcommand %q (run nixdeploy keys -h for the list)", args[0])
	}
	return c.run(ctx, s, args[1:])
}

// keysFlags adds the --config flag every config-reading subcommand has.
func keysFlags(s stdio, name, synopsis string) (*flagSet, *string) {
	fs := newFlags(s, "keys "+name, "keys "+synopsis)
	path := fs.String("config", defaultConfig(), "fleet config `file` (env NIXDEPLOY_CONFIG)")
	return fs, path
}

// openKeys loads the config and opens its key store.
func openKeys(path string) (*nixdeploy.Config, *keys.Store, error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	store, err := keys.OpenStore(cfg)
	if err != nil {
		return nil, nil, &exitError{code: 1, msg: err.Error()}
	}
	return cfg, store, nil
}

func hostNames(hosts []nixdeploy.Host) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = h.Name
	}
	return out
}

// displayPath shortens paths below the working directory, which keeps
// output readable and free of home directory names.
func displayPath(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	rel, err := filepath.Rel(wd, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return p
	}
	return rel
}

// printChanges prints one line per item and returns an error counting the
// failed ones.
func printChanges(s stdio, name string, changes []keys.Change) error {
	failed := 0
	for _, c := range changes {
		if c.Err != nil {
			failed++
			fmt.Fprintf(s.err, "%s: %v\n", displayPath(c.Path), c.Err)
			continue
		}
		fmt.Fprintf(s.out, "%-9s %s\n", c.Action, displayPath(c.Path))
	}
	if failed > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("keys %s: %d problem(s)", name, failed)}
	}
	return nil
}

func cmdKeysInit(ctx context.Context, s stdio, args []string) error {
	fs, path := keysFlags(s, "init", `init [--config FILE]

Creates, for every host of the fleet, whatever is missing of:
  <keys.dir>/<host>_ssh_host_ed25519_key      SSH host key (0600, OpenSSH format)
  <keys.dir>/<host>_ssh_host_ed25519_key.pub  its public half (0644)
  <keys.dir>/<host>_user_age_key              the host's user age identity (0600)
  <keys.dir>/<host>_disk_key                  LUKS hosts (disk_key set): a random
                                              typeable passphrase, no newline (0600)
  <keys.dir>/<host>_initrd_ssh_host_ed25519_key(.pub)
                                              initrd_ssh hosts: the initrd's own
                                              SSH host key pair
Existing files, plaintext or sealed (.age), are never replaced; a missing .pub
is derived from its private key. Running it again changes nothing.`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("keys init: unexpected argument %q", fs.Arg(0))
	}
	cfg, store, err := openKeys(*path)
	if err != nil {
		return err
	}
	changes, err := store.InitHosts(ctx, cfg.Hosts)
	if err != nil {
		return err
	}
	if err := printChanges(s, "init", changes); err != nil {
		return err
	}
	counts := map[string]int{}
	for _, c := range changes {
		counts[c.Action]++
	}
	if counts["unchanged"] == len(changes) {
		fmt.Fprintf(s.out, "nothing to do: %d files unchanged\n", len(changes))
		return nil
	}
	fmt.Fprintf(s.out, "%d created, %d derived, %d unchanged\n", counts["created"], counts["derived"], counts["unchanged"])
	return nil
}

func cmdKeysSopsConfig(ctx context.Context, s stdio, args []string) error {
	fs, path := keysFlags(s, "sops-config", `sops-config [--config FILE] [--out PATH]

Writes .sops.yaml: the admin recipients and every host's age recipient (from
its .pub), each behind a named anchor, and a creation rule for the secrets
file that encrypts to all of them, then prints the sops command to run next
(sops --config <sops_config> …: sops looks for .sops.yaml from the current
directory upwards, not beside the secrets file, so the command names it).`)
	out := fs.String("out", "", "write to `path` instead of secrets.sops_config; - for stdout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("keys sops-config: unexpected argument %q", fs.Arg(0))
	}
	cfg, store, err := openKeys(*path)
	if err != nil {
		return err
	}
	dest := *out
	if dest == "" {
		dest = cfg.Secrets.SopsConfig
	}
	if dest == "" {
		return &exitError{code: 1, msg: "keys sops-config: secrets.sops_config is not set; set it or pass --out PATH (- for stdout)"}
	}
	if probs := keys.ConfigProblems(cfg); len(probs) > 0 {
		// sops would refuse the file, or encrypt to a key nobody has.
		return &exitError{code: 1, msg: "keys sops-config: " + cfg.Path + ": " + strings.Join(probs, "; ")}
	}
	data, err := keys.SopsConfig(cfg, store)
	if err != nil {
		return &exitError{code: 1, msg: "keys sops-config: " + oneLine(err.Error())}
	}
	if dest == "-" {
		_, err := s.out.Write(data)
		return err
	}
	changed, err := keys.WriteSopsConfig(dest, data)
	if err != nil {
		return err
	}
	n := len(cfg.Secrets.AdminRecipients) + len(cfg.Hosts)
	if !changed {
		fmt.Fprintf(s.out, "unchanged %s (%d recipients)\n", displayPath(dest), n)
		return nil
	}
	fmt.Fprintf(s.out, "wrote %s (%d recipients)\n", displayPath(dest), n)
	switch _, err := os.Stat(cfg.Secrets.File); {
	case cfg.Secrets.File == "" || dest != cfg.Secrets.SopsConfig:
	case err == nil:
		fmt.Fprintf(s.out, "next, re-encrypt the secrets file for them:\n  sops --config %s updatekeys -y %s\n", displayPath(dest), displayPath(cfg.Secrets.File))
	default:
		fmt.Fprintf(s.out, "next, create the secrets file:\n  nixdeploy keys secrets-template | %s\n", sopsEncryptCommand(cfg))
	}
	return nil
}

func cmdKeysSecretsTemplate(ctx context.Context, s stdio, args []string) error {
	fs, path := keysFlags(s, "secrets-template", `secrets-template [--config FILE] [--user NAME]

Prints the plaintext user-age-keys section of the secrets file, one
<user>-<host> entry per host, from the per-host user age identities. The output
contains secret keys: pipe it into sops, do not save it. With the example layout:
  nixdeploy keys secrets-template | sops --config secrets/.sops.yaml encrypt \
    --filename-override secrets/secrets.yaml > secrets/secrets.yaml.new \
    && mv secrets/secrets.yaml.new secrets/secrets.yaml`)
	user := fs.String("user", "", "login the keys are for (default secrets.user)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("keys secrets-template: unexpected argument %q", fs.Arg(0))
	}
	if *user != "" && !nixdeploy.ValidName(*user) {
		return usageErrorf("keys secrets-template: --user %q is not a valid user name", *user)
	}
	cfg, store, err := openKeys(*path)
	if err != nil {
		return err
	}
	u := cfg.Secrets.User
	if *user != "" {
		u = *user
	}
	data, err := keys.SecretsTemplate(store, u, hostNames(cfg.Hosts))
	if err != nil {
		return &exitError{code: 1, msg: "keys secrets-template: " + oneLine(err.Error())}
	}
	defer clear(data)
	if w := secretsTemplateWarning(s.out, cfg); w != "" {
		fmt.Fprintln(s.err, "nixdeploy: warning: "+w)
	}
	_, err = s.out.Write(data)
	return err
}

// secretsTemplateWarning says what is wrong with where the plaintext goes:
// nothing when it is piped (into sops, as documented); a warning when it
// lands on a terminal or in a file, where it stays readable.
func secretsTemplateWarning(out io.Writer, cfg *nixdeploy.Config) string {
	pipe := "pipe it into " + sopsEncryptCommand(cfg)
	f, ok := out.(*os.File)
	if !ok {
		return ""
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
		return ""
	case fi.Mode()&os.ModeNamedPipe != 0 || fi.Mode()&os.ModeSocket != 0:
		return ""
	case fi.Mode().IsRegular():
		return "the output contains secret keys and is going into a file: delete it, and " + pipe + " instead"
	}
	return "the output contains secret keys: " + pipe + ", do not save it"
}

// sopsEncryptCommand is the documented sops command that encrypts the
// template into the secrets file. It names .sops.yaml with --config because
// sops looks for it from the current directory upwards, not from the
// secrets file's directory (getsops/sops config/config.go,
// LookupConfigFile), and writes a temporary file first so a failing sops
// leaves the secrets file alone.
func sopsEncryptCommand(cfg *nixdeploy.Config) string {
	file := displayPath(cfg.Secrets.File)
	if file == "" {
		file = "secrets.yaml"
	}
	conf := ""
	if cfg.Secrets.SopsConfig != "" {
		conf = " --config " + displayPath(cfg.Secrets.SopsConfig)
	}
	return fmt.Sprintf("sops%s encrypt --filename-override %s > %s.new && mv %s.new %s", conf, file, file, file, file)
}

func cmdKeysCheck(ctx context.Context, s stdio, args []string) error {
	fs, path := keysFlags(s, "check", `check [--config FILE] [HOST...]

The key preflight the bot runs before every install, for the named hosts
(names, @tags or globs; default all). For each host it checks:
  key          the private key (plaintext or .age) parses and is ed25519
  pub          the .pub file is its public half
  mode         a plaintext private key is not readable by group/others
  unique       no other host of the fleet has the same key
  disk-key     LUKS hosts: the disk key exists (0600 or sealed), one line
  initrd       initrd_ssh hosts: the initrd host key exists, matches its
               .pub and is not the host key
  sops-config  the host's age recipient is in .sops.yaml
  recipient    the secrets file (secrets.file) is encrypted to the host
  decrypt      the host's age identity, derived from its private key, opens
               the file's data key alone, and the file's MAC holds
  user-key     user-age-keys/<user>-<host> decrypts, as the host, to the
               host's user age key in the key store
  password     the secrets file has <user>-password, the password hash
               the host's first activation reads (nix/, neededForUsers)
It prints one row per host (✓ passed, ✗ failed, - not checked) and exits 1
with one line per failure.`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, store, err := openKeys(*path)
	if err != nil {
		return err
	}
	rep, err := keys.Check(ctx, cfg, store, fs.Args())
	if errors.Is(err, nixdeploy.ErrUnknownHost) || errors.Is(err, nixdeploy.ErrInvalidInput) {
		return &exitError{code: 1, msg: "keys check: " + err.Error()}
	}
	if err != nil {
		return err
	}
	if err := rep.Print(s.out); err != nil {
		return err
	}
	failures := rep.Failures()
	for _, f := range failures {
		fmt.Fprintln(s.err, f)
	}
	if len(failures) > 0 {
		return &exitError{code: 1, msg: "keys check: " + plural(len(failures), "problem")}
	}
	fmt.Fprintf(s.out, "ok: %s ready\n", plural(len(rep.Rows), "host"))
	return nil
}

// recipientFlags collects repeated --recipient values.
type recipientFlags []age.Recipient

func (r *recipientFlags) String() string { return "" }

func (r *recipientFlags) Set(v string) error {
	rs, err := age.ParseRecipients(strings.NewReader(v))
	if err != nil || len(rs) != 1 {
		return errors.New("not an age recipient")
	}
	*r = append(*r, rs[0])
	return nil
}

func cmdKeysSeal(ctx context.Context, s stdio, args []string) error {
	fs, path := keysFlags(s, "seal", `seal [--config FILE] [--recipient age1...]... HOST...

Encrypts the named hosts' plaintext keys (SSH host key, user age identity, and
the disk key and initrd host key where present) with age into <file>.age, and removes each plaintext only after the sealed file
decrypted with the bot's identity and matched it. The default recipient is the
bot's own identity (NIXDEPLOY_AGE_IDENTITY or keys.age_identity_file).`)
	var recipients recipientFlags
	fs.Var(&recipients, "recipient", "encrypt to this age `recipient` (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErrorf("keys seal: name the hosts to seal (names, @tags or globs)")
	}
	cfg, store, err := openKeys(*path)
	if err != nil {
		return err
	}
	if len(store.Identities) == 0 {
		return &exitError{code: 1, msg: "keys seal: " + keys.ErrNoIdentity.Error() + " (it is needed to verify the sealed files)"}
	}
	if len(recipients) == 0 {
		recipients = keys.IdentityRecipients(store.Identities)
	}
	hosts, err := cfg.Select(fs.Args())
	if err != nil {
		return &exitError{code: 1, msg: "keys seal: " + err.Error()}
	}
	var all []keys.Change
	for _, h := range hosts {
		changes, err := store.Seal(ctx, h.Name, recipients)
		all = append(all, changes...)
		if err != nil {
			printChanges(s, "seal", all)
			return err
		}
	}
	for i := range all {
		if all[i].Err == nil {
			all[i].Path += keys.SealedSuffix
		}
	}
	return printChanges(s, "seal", all)
}

func cmdKeysAgeRecipient(ctx context.Context, s stdio, args []string) error {
	fs := newFlags(s, "keys age-recipient", `keys age-recipient [--skip-unsupported] [FILE...]

Prints the age recipient (age1...) of every ssh-ed25519 key in the FILEs, or in
standard input when there is none or FILE is -. It reads .pub files,
authorized_keys and known_hosts lines and ssh-keyscan output; the recipient is
the one ssh-to-age and sops-nix derive.`)
	skip := fs.Bool("skip-unsupported", false, "skip keys other than ed25519, with a note on stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	var out strings.Builder
	for _, f := range files {
		name, data, err := readInput(s, f)
		if err != nil {
			return err
		}
		pks, err := keys.ParsePublicKeys(data)
		if err != nil {
			return &exitError{code: 1, msg: fmt.Sprintf("%s: %v", name, err)}
		}
		for _, pk := range pks {
			where := fmt.Sprintf("%s:%d", name, pk.Line)
			if pk.Marker == "revoked" {
				fmt.Fprintf(s.err, "nixdeploy: %s: skipping @revoked key\n", where)
				continue
			}
			r, err := keys.AgeRecipient(pk.Key)
			if errors.Is(err, keys.ErrUnsupportedKey) && *skip {
				fmt.Fprintf(s.err, "nixdeploy: %s: skipping %s key\n", where, pk.Key.Type())
				continue
			}
			if errors.Is(err, keys.ErrUnsupportedKey) {
				return &exitError{code: 1, msg: fmt.Sprintf("%s: %v (pass --skip-unsupported to skip it)", where, err)}
			}
			if err != nil {
				return &exitError{code: 1, msg: fmt.Sprintf("%s: %v", where, err)}
			}
			out.WriteString(r + "\n")
		}
	}
	_, err := io.WriteString(s.out, out.String())
	return err
}

// readInput reads a FILE argument, - meaning standard input.
func readInput(s stdio, f string) (name string, data []byte, err error) {
	if f == "-" {
		data, err = io.ReadAll(s.in)
		if err != nil {
			return "", nil, fmt.Errorf("read stdin: %w", err)
		}
		return "stdin", data, nil
	}
	data, err = os.ReadFile(f)
	if err != nil {
		return "", nil, &exitError{code: 1, msg: err.Error()}
	}
	return f, data, nil
}

func cmdKeysAgeIdentity(ctx context.Context, s stdio, args []string) error {
	fs, path := keysFlags(s, "age-identity", `age-identity [--config FILE] FILE

Prints the age identity (AGE-SECRET-KEY-1...) of an unencrypted OpenSSH
ed25519 private key, like ssh-to-age -private-key; an age identity file is
printed as is. A sealed FILE.age is decrypted in memory with the bot's
identity (NIXDEPLOY_AGE_IDENTITY, or keys.age_identity_file of the config).`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("keys age-identity: want exactly one FILE")
	}
	name, data, err := readInput(s, fs.Arg(0))
	if err != nil {
		return err
	}
	defer clear(data)
	if strings.HasSuffix(name, keys.SealedSuffix) {
		ids, err := ageIdentitiesFor(*path)
		if err != nil {
			return &exitError{code: 1, msg: fmt.Sprintf("%s is sealed: %v", name, err)}
		}
		plain, err := keys.Decrypt(strings.NewReader(string(data)), ids)
		if err != nil {
			return &exitError{code: 1, msg: fmt.Sprintf("decrypt %s: %v", name, err)}
		}
		defer clear(plain)
		data = plain
	}
	id, err := keys.IdentityFromKeyFile(data)
	if err != nil {
		return &exitError{code: 1, msg: fmt.Sprintf("%s: %v", name, err)}
	}
	_, err = fmt.Fprintln(s.out, id)
	return err
}

// ageIdentitiesFor finds the bot's identity: the environment first, then
// the config, which is only loaded when the environment has none.
func ageIdentitiesFor(configPath string) ([]age.Identity, error) {
	ids, err := keys.LoadIdentities(nil)
	if !errors.Is(err, keys.ErrNoIdentity) {
		return ids, err
	}
	cfg, cerr := nixdeploy.LoadConfig(configPath)
	if cerr != nil {
		return nil, fmt.Errorf("%w (and the config did not load: %s)", err, oneLine(cerr.Error()))
	}
	return keys.LoadIdentities(cfg)
}

func cmdKeysUnseal(ctx context.Context, s stdio, args []string) error {
	fs, path := keysFlags(s, "unseal", `unseal [--config FILE] [--out DIR] HOST...

Writes plaintext copies of the named hosts' keys (SSH host key and .pub, user
age identity, disk key, initrd host key and .pub) into DIR under the key
store's own file names, for the manual route:
  dir=$(nixdeploy keys unseal ganon)
  nix/scripts/bootstrap-nixos.sh -n ganon ... -K "$dir" -e "$dir/ganon_disk_key"
  rm -rf "$dir"
Without --out it creates a new private (0700) temporary directory. Only the
directory is printed on stdout; the files and a warning go to stderr. Existing files are never replaced. Delete DIR when you are done: it holds
private keys in plaintext.`)
	out := fs.String("out", "", "write into `dir` (created 0700) instead of a new temporary directory")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErrorf("keys unseal: name the hosts to unseal (names, @tags or globs)")
	}
	cfg, store, err := openKeys(*path)
	if err != nil {
		return err
	}
	hosts, err := cfg.Select(fs.Args())
	if err != nil {
		return &exitError{code: 1, msg: "keys unseal: " + err.Error()}
	}
	dir := *out
	if dir == "" {
		dir, err = os.MkdirTemp("", "nixdeploy-unseal-")
		if err != nil {
			return &exitError{code: 1, msg: "keys unseal: " + err.Error()}
		}
	}
	var all []keys.Change
	for _, h := range hosts {
		changes, err := store.Unseal(ctx, h.Name, dir)
		all = append(all, changes...)
		if err != nil {
			return &exitError{code: 1, msg: "keys unseal: " + oneLine(err.Error())}
		}
	}
	// Only the directory goes to stdout, so dir=$(nixdeploy keys unseal …)
	// works; the file list goes to stderr.
	perr := printChanges(stdio{in: s.in, out: s.err, err: s.err}, "unseal", all)
	fmt.Fprintf(s.err, "nixdeploy: warning: %s holds private keys in plaintext; when the bootstrap is done: rm -rf %s\n", displayPath(dir), displayPath(dir))
	if perr != nil {
		return perr
	}
	fmt.Fprintln(s.out, displayPath(dir))
	return nil
}

func cmdKeysDiskKey(ctx context.Context, s stdio, args []string) error {
	if len(args) == 0 || args[0] != "set" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			args = []string{"set", "-h"}
		} else {
			return usageErrorf("keys disk-key: want: keys disk-key set [--config FILE] HOST (the passphrase on stdin)")
		}
	}
	fs, path := keysFlags(s, "disk-key set", `disk-key set [--config FILE] HOST < passphrase

Replaces the LUKS passphrase of HOST (a host with disk_key set) with standard
input, for an operator who wants their own. One trailing newline is removed;
an empty passphrase is refused. A sealed disk key stays sealed (to the bot's
identity, as keys seal does); a plaintext one stays plaintext (0600). Check
afterwards: nixdeploy keys check HOST.`)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("keys disk-key set: name exactly one HOST")
	}
	cfg, store, err := openKeys(*path)
	if err != nil {
		return err
	}
	h, ok := cfg.Host(fs.Arg(0))
	if !ok {
		return &exitError{code: 1, msg: fmt.Sprintf("keys disk-key set: unknown host %q", fs.Arg(0))}
	}
	if !h.LUKS() {
		return &exitError{code: 1, msg: fmt.Sprintf("keys disk-key set: %s has no disk_key in the fleet config: its disk layout has no LUKS", h.Name)}
	}
	if isTerminal(s.in) {
		fmt.Fprintf(s.err, "type the new passphrase of %s, then Enter and Ctrl-D (it shows as you type; pipe it in to avoid that)\n", h.Name)
	}
	data, err := io.ReadAll(io.LimitReader(s.in, 4096))
	if err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	defer clear(data)
	ch, err := store.SetDiskKey(h.Name, data, keys.IdentityRecipients(store.Identities))
	if err != nil {
		return &exitError{code: 1, msg: "keys disk-key set: " + oneLine(err.Error())}
	}
	fmt.Fprintf(s.out, "%-9s %s\n", ch.Action, displayPath(ch.Path))
	return nil
}

// plural is "1 host" or "2 hosts" ("2 mismatches").
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "ch") || strings.HasSuffix(word, "sh") || strings.HasSuffix(word, "s") || strings.HasSuffix(word, "x") {
		return fmt.Sprintf("%d %ses", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
