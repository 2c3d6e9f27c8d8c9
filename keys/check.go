package keys

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy"
)

// CheckName names one check of the key preflight.
type CheckName string

// The checks, in report column order.
const (
	// CheckKey: the private key (plaintext or sealed) parses and is ed25519.
	CheckKey CheckName = "key"
	// CheckPub: the .pub file is the private key's public half.
	CheckPub CheckName = "pub"
	// CheckMode: a plaintext private key is not readable by group or others.
	CheckMode CheckName = "mode"
	// CheckUnique: no other host of the fleet has the same key.
	CheckUnique CheckName = "unique"
	// CheckDiskKey: a LUKS host's disk key is present, readable (0600 when
	// plaintext, or sealed), not empty and one line.
	CheckDiskKey CheckName = "disk-key"
	// CheckInitrd: an initrd_ssh host's initrd host key is present, 0600
	// when plaintext, ed25519, matches its .pub and is not the host key.
	CheckInitrd CheckName = "initrd"
	// CheckSopsConfig: the host's age recipient is in .sops.yaml.
	CheckSopsConfig CheckName = "sops-config"
	// CheckRecipient: the secrets file is encrypted to the host.
	CheckRecipient CheckName = "recipient"
	// CheckDecrypt: the host's age identity, derived from its private host
	// key, opens the secrets file's data key on its own (Shamir threshold
	// included), and the file's MAC is intact: what sops-nix needs at
	// first boot.
	CheckDecrypt CheckName = "decrypt"
	// CheckUserKey: user-age-keys/<user>-<host> in the secrets file
	// decrypts, as the host, to the host's user age identity in the key
	// store.
	CheckUserKey CheckName = "user-key"
	// CheckPassword: the secrets file has the user's password hash,
	// <user>-password, which nix/ reads with neededForUsers; without it
	// sops-nix fails the first activation after the install.
	CheckPassword CheckName = "password"
)

// Checks lists every check in report order.
var Checks = []CheckName{CheckKey, CheckPub, CheckMode, CheckUnique, CheckDiskKey, CheckInitrd, CheckSopsConfig, CheckRecipient, CheckDecrypt, CheckUserKey, CheckPassword}

// Status is the outcome of one check.
type Status int

// Outcomes. NotChecked means the check did not apply or could not run
// because an earlier one failed.
const (
	NotChecked Status = iota
	Pass
	Fail
)

// Mark is the one-character form of s used in the report table.
func (s Status) Mark() string {
	switch s {
	case Pass:
		return "✓"
	case Fail:
		return "✗"
	}
	return "-"
}

// Result is one check on one host. Reason says what to do when it failed.
type Result struct {
	Status Status
	Reason string
}

// Row is every check on one host.
type Row struct {
	Host    string
	Results map[CheckName]Result
}

// Report is the outcome of Check, one row per host in fleet order.
type Report struct {
	// Config holds ConfigProblems: objections to the config itself, such as
	// the example's placeholder admin recipient.
	Config []string
	Rows   []Row
}

// OK reports whether no check failed.
func (r *Report) OK() bool { return len(r.Failures()) == 0 }

// Failures returns one line per failed check: "<host>: <reason>", after one
// "config: <problem>" line per config problem.
func (r *Report) Failures() []string {
	var out []string
	for _, p := range r.Config {
		out = append(out, "config: "+p)
	}
	for _, row := range r.Rows {
		for _, c := range Checks {
			if res := row.Results[c]; res.Status == Fail {
				out = append(out, row.Host+": "+res.Reason)
			}
		}
	}
	return out
}

// Print writes the table: a header naming the checks, then one row of marks
// per host.
func (r *Report) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "host")
	for _, c := range Checks {
		fmt.Fprintf(tw, "\t%s", c)
	}
	fmt.Fprintln(tw)
	for _, row := range r.Rows {
		fmt.Fprint(tw, row.Host)
		for _, c := range Checks {
			fmt.Fprintf(tw, "\t%s", row.Results[c].Status.Mark())
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// Check is the key preflight the bot runs before every install. It checks
// the selected hosts (selectors as in Config.Select; all hosts when empty)
// and returns a report; the error is only for a bad selector or a cancelled
// context. Uniqueness is judged against the whole fleet, selected or not.
//
// The .sops.yaml and secrets checks run when secrets.sops_config and
// secrets.file are configured. They use the recipient derived from the
// private key, which is what the host will decrypt with, and fall back to the
// .pub when the private key is unreadable.
func Check(ctx context.Context, cfg *nixdeploy.Config, store *Store, hosts []string) (*Report, error) {
	selected := map[string]bool{}
	if len(hosts) == 0 {
		for _, h := range cfg.Hosts {
			selected[h.Name] = true
		}
	} else {
		sel, err := cfg.Select(hosts)
		if err != nil {
			return nil, err
		}
		for _, h := range sel {
			selected[h.Name] = true
		}
	}

	var states []hostState
	for _, h := range cfg.Hosts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		st := hostState{name: h.Name}
		if selected[h.Name] {
			st.row = &Row{Host: h.Name, Results: map[CheckName]Result{}}
			st.pub, st.id = checkHostKey(store, h.Name, st.row.Results)
			if h.LUKS() {
				st.row.Results[CheckDiskKey] = checkDiskKey(store, h.Name)
			}
			if h.InitrdSSH != nil {
				st.row.Results[CheckInitrd] = checkInitrdKey(store, h.Name, st.pub)
			}
		} else if pk, err := store.HostPublicKey(h.Name); err == nil {
			// Unselected sealed keys are not decrypted: their .pub is
			// enough to find a shared key.
			st.pub = pk
		}
		states = append(states, st)
	}
	checkUnique(states)
	checkSops(cfg, store, states)

	rep := &Report{Config: ConfigProblems(cfg)}
	for _, st := range states {
		if st.row != nil {
			rep.Rows = append(rep.Rows, *st.row)
		}
	}
	return rep, nil
}

type hostState struct {
	name string
	pub  ssh.PublicKey
	// id is the host's age identity, derived from its private host key:
	// what sops-nix on the host decrypts with.
	id *age.X25519Identity
	// row is nil for hosts that were not selected.
	row *Row
}

// checkHostKey runs the key, pub and mode checks and returns the host's
// public key and age identity for the later checks, or nil.
func checkHostKey(store *Store, host string, res map[CheckName]Result) (ssh.PublicKey, *age.X25519Identity) {
	keyPath, pubPath := store.HostKeyPath(host), store.HostPubPath(host)
	filePub, pubErr := store.HostPublicKey(host)
	sec, err := store.readSecret(keyPath)
	if err != nil {
		if errors.Is(err, ErrNoKey) {
			err = fmt.Errorf("no private key (%s or %s%s); run nixdeploy keys init", keyPath, filepath.Base(keyPath), SealedSuffix)
		}
		res[CheckKey] = Result{Fail, err.Error()}
		return filePub, nil
	}
	defer clear(sec.Data)
	if !sec.Sealed {
		if sec.Mode&0o077 != 0 {
			res[CheckMode] = Result{Fail, (&ModeError{Path: sec.Path, Mode: sec.Mode}).Error()}
		} else {
			res[CheckMode] = Result{Status: Pass}
		}
	}
	priv, err := ParseSSHPrivateKey(sec.Data)
	if err != nil {
		res[CheckKey] = Result{Fail, fmt.Sprintf("%s: %v", sec.Path, err)}
		return filePub, nil
	}
	defer clear(priv)
	res[CheckKey] = Result{Status: Pass}
	privPub, err := ssh.NewPublicKey(priv.Public().(ed25519.PublicKey))
	if err != nil {
		res[CheckKey] = Result{Fail, fmt.Sprintf("%s: %v", sec.Path, err)}
		return filePub, nil
	}
	id, err := Ed25519AgeIdentity(priv)
	if err != nil {
		res[CheckKey] = Result{Fail, fmt.Sprintf("%s: %v", sec.Path, err)}
		return privPub, nil
	}
	switch {
	case errors.Is(pubErr, fs.ErrNotExist) || errors.Is(pubErr, ErrNoKey):
		res[CheckPub] = Result{Fail, fmt.Sprintf("%s is missing; run nixdeploy keys init to derive it from the private key", pubPath)}
	case pubErr != nil:
		res[CheckPub] = Result{Fail, pubErr.Error()}
	case !bytes.Equal(filePub.Marshal(), privPub.Marshal()):
		res[CheckPub] = Result{Fail, fmt.Sprintf("%s (%s) does not match the private key (%s); delete the .pub and run nixdeploy keys init to derive it again",
			pubPath, ssh.FingerprintSHA256(filePub), ssh.FingerprintSHA256(privPub))}
	default:
		res[CheckPub] = Result{Status: Pass}
	}
	return privPub, id
}

func checkUnique(states []hostState) {
	for i, st := range states {
		if st.row == nil || st.pub == nil {
			continue
		}
		var dups []string
		for j, o := range states {
			if i != j && o.pub != nil && bytes.Equal(o.pub.Marshal(), st.pub.Marshal()) {
				dups = append(dups, o.name)
			}
		}
		if len(dups) > 0 {
			st.row.Results[CheckUnique] = Result{Fail, fmt.Sprintf("shares its host key %s with %s; every host needs its own key",
				ssh.FingerprintSHA256(st.pub), strings.Join(dups, ", "))}
		} else {
			st.row.Results[CheckUnique] = Result{Status: Pass}
		}
	}
}

func checkSops(cfg *nixdeploy.Config, store *Store, states []hostState) {
	recipient := map[string]string{}
	for _, st := range states {
		if st.row != nil && st.pub != nil {
			if r, err := AgeRecipient(st.pub); err == nil {
				recipient[st.name] = r
			}
		}
	}

	if path := cfg.Secrets.SopsConfig; path != "" {
		set, err := SopsConfigRecipients(path, cfg.Secrets.File)
		for _, st := range states {
			r, ok := recipient[st.name]
			switch {
			case st.row == nil:
			case err != nil:
				st.row.Results[CheckSopsConfig] = Result{Fail, err.Error()}
			case !ok:
			case !set[r]:
				st.row.Results[CheckSopsConfig] = Result{Fail, fmt.Sprintf("age recipient %s is missing from %s; run nixdeploy keys sops-config", r, path)}
			default:
				st.row.Results[CheckSopsConfig] = Result{Status: Pass}
			}
		}
	}

	path := cfg.Secrets.File
	if path == "" {
		return
	}
	sf, err := OpenSopsFile(path)
	var recipients map[string]bool
	if err == nil {
		recipients = sf.Recipients()
	}
	for _, st := range states {
		if st.row == nil {
			continue
		}
		if err != nil {
			// One reason per host is enough; the rest cannot be judged.
			st.row.Results[CheckRecipient] = Result{Fail, err.Error()}
			continue
		}
		r, ok := recipient[st.name]
		if ok {
			if recipients[r] {
				st.row.Results[CheckRecipient] = Result{Status: Pass}
			} else {
				st.row.Results[CheckRecipient] = Result{Fail, fmt.Sprintf("%s is not encrypted to the host's recipient %s; run %s", path, r, updateKeysHint(cfg))}
			}
		}
		checkDecrypt(cfg, store, sf, st, ok && recipients[r])
	}
}

// updateKeysHint is the sops command that re-encrypts the secrets file for
// the recipients of .sops.yaml, as the operator can type it from any
// directory: sops looks for .sops.yaml from the current directory upwards,
// not from the file's, so the command names it.
func updateKeysHint(cfg *nixdeploy.Config) string {
	if cfg.Secrets.SopsConfig == "" {
		return "sops updatekeys -y " + shellQuote(cfg.Secrets.File)
	}
	return "sops --config " + shellQuote(cfg.Secrets.SopsConfig) + " updatekeys -y " + shellQuote(cfg.Secrets.File)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@+=,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// checkDecrypt decrypts as the host: its own age identity opens the data
// key, the MAC holds, and the host's user-age-keys entry is the host's user
// age identity from the key store.
func checkDecrypt(cfg *nixdeploy.Config, store *Store, sf *SopsFile, st hostState, isRecipient bool) {
	res := st.row.Results
	name := UserSecretName(cfg.Secrets.User, st.name)
	secret := UserKeysName + "/" + name
	if !sf.has(UserKeysName, name) {
		res[CheckUserKey] = Result{Fail, fmt.Sprintf("%s has no %s; add it with sops (nixdeploy keys secrets-template prints the value)", sf.Path, secret)}
	}
	if pw := PasswordSecretName(cfg.Secrets.User); sf.has(pw) {
		res[CheckPassword] = Result{Status: Pass}
	} else {
		res[CheckPassword] = Result{Fail, fmt.Sprintf("%s has no %s, the password hash the host's first activation reads; add it with sops (nixdeploy keys secrets-template prints a locked one)", sf.Path, pw)}
	}
	if st.id == nil {
		return
	}
	key, err := sf.DataKey(st.id)
	var te *ThresholdError
	switch {
	case errors.Is(err, ErrNotEncryptedTo) && !isRecipient:
		// The recipient check already says what to do.
		return
	case errors.Is(err, ErrNotEncryptedTo):
		res[CheckDecrypt] = Result{Fail, fmt.Sprintf("the host's key opens none of %s's age entries (its recipient is listed, but the entry was encrypted to another key); run %s", sf.Path, updateKeysHint(cfg))}
		return
	case errors.As(err, &te):
		res[CheckDecrypt] = Result{Fail, fmt.Sprintf("the host alone cannot decrypt %s: %v; put the host in a single key group in .sops.yaml (nixdeploy keys sops-config does) and run %s", sf.Path, te, updateKeysHint(cfg))}
		return
	case err != nil:
		res[CheckDecrypt] = Result{Fail, fmt.Sprintf("the host cannot open the data key of %s: %v", sf.Path, err)}
		return
	}
	defer clear(key)
	if err := sf.VerifyMAC(key); err != nil {
		res[CheckDecrypt] = Result{Fail, fmt.Sprintf("%s: %v; sops-nix refuses such a file: edit it only with sops", sf.Path, err)}
		return
	}
	res[CheckDecrypt] = Result{Status: Pass}
	if _, failed := res[CheckUserKey]; failed {
		return
	}
	value, err := sf.Value(key, UserKeysName, name)
	if err != nil {
		res[CheckUserKey] = Result{Fail, fmt.Sprintf("%s in %s: %v", secret, sf.Path, err)}
		return
	}
	want, err := store.UserIdentity(st.name)
	if err != nil {
		res[CheckUserKey] = Result{Fail, err.Error()}
		return
	}
	got, err := parseSingleX25519(secret, []byte(value))
	switch {
	case err != nil:
		res[CheckUserKey] = Result{Fail, fmt.Sprintf("%s in %s is not an age identity (AGE-SECRET-KEY-1…); put the host's user age key there (nixdeploy keys secrets-template prints it)", secret, sf.Path)}
	case got.String() != want.String():
		whose := "another key"
		for _, h := range cfg.Hosts {
			if h.Name == st.name {
				continue
			}
			if other, err := store.UserIdentity(h.Name); err == nil && other.String() == got.String() {
				whose = h.Name + "'s user age key"
			}
		}
		res[CheckUserKey] = Result{Fail, fmt.Sprintf("%s in %s holds %s (%s), not the host's user age key %s from the key store; put the right one there with sops (nixdeploy keys secrets-template prints it)",
			secret, sf.Path, whose, got.Recipient(), want.Recipient())}
	default:
		res[CheckUserKey] = Result{Status: Pass}
	}
}

func checkDiskKey(store *Store, host string) Result {
	path := store.DiskKeyPath(host)
	sec, err := store.readPrivate(path)
	switch {
	case errors.Is(err, ErrNoKey):
		return Result{Fail, fmt.Sprintf("LUKS host without a disk key (%s or %s%s); run nixdeploy keys init, or nixdeploy keys disk-key set %s", path, filepath.Base(path), SealedSuffix, host)}
	case err != nil:
		return Result{Fail, err.Error()}
	}
	defer clear(sec.Data)
	switch {
	case len(sec.Data) == 0:
		return Result{Fail, fmt.Sprintf("%s is empty; set a passphrase with nixdeploy keys disk-key set %s", sec.Path, host)}
	case bytes.ContainsAny(sec.Data, "\r\n"):
		// disko pipes the file to cryptsetup; a newline would become part
		// of a passphrase the console prompt never sends.
		return Result{Fail, fmt.Sprintf("%s contains a line break; write it again with nixdeploy keys disk-key set %s", sec.Path, host)}
	}
	return Result{Status: Pass}
}

func checkInitrdKey(store *Store, host string, hostPub ssh.PublicKey) Result {
	keyPath := store.InitrdKeyPath(host)
	pubPath := keyPath + ".pub"
	sec, err := store.readPrivate(keyPath)
	switch {
	case errors.Is(err, ErrNoKey):
		return Result{Fail, fmt.Sprintf("initrd_ssh host without an initrd host key (%s or %s%s); run nixdeploy keys init", keyPath, filepath.Base(keyPath), SealedSuffix)}
	case err != nil:
		return Result{Fail, err.Error()}
	}
	defer clear(sec.Data)
	priv, err := ParseSSHPrivateKey(sec.Data)
	if err != nil {
		return Result{Fail, fmt.Sprintf("%s: %v", sec.Path, err)}
	}
	privPub, err := ssh.NewPublicKey(priv.Public().(ed25519.PublicKey))
	if err != nil {
		return Result{Fail, fmt.Sprintf("%s: %v", sec.Path, err)}
	}
	filePub, err := store.InitrdHostPublicKey(host)
	switch {
	case errors.Is(err, ErrNoKey):
		return Result{Fail, fmt.Sprintf("%s is missing; run nixdeploy keys init to derive it from the private key", pubPath)}
	case err != nil:
		return Result{Fail, err.Error()}
	case !bytes.Equal(filePub.Marshal(), privPub.Marshal()):
		return Result{Fail, fmt.Sprintf("%s (%s) does not match the initrd private key (%s); delete the .pub and run nixdeploy keys init to derive it again",
			pubPath, ssh.FingerprintSHA256(filePub), ssh.FingerprintSHA256(privPub))}
	case hostPub != nil && bytes.Equal(hostPub.Marshal(), privPub.Marshal()):
		// The initrd key sits unencrypted in the boot partition; sharing
		// it would hand the host's identity to anyone with the disk.
		return Result{Fail, fmt.Sprintf("the initrd host key is the host key %s; the initrd needs a key of its own (delete %s and its .pub, then run nixdeploy keys init)", ssh.FingerprintSHA256(privPub), filepath.Base(keyPath))}
	}
	return Result{Status: Pass}
}

// Checker runs the key preflight of the fleet in Config against Store for
// "/nixdeploy keys check"; it is the bot's KeyChecker as it is.
type Checker struct {
	Config *nixdeploy.Config
	Store  *Store
}

// CheckKeys checks hosts and returns the printed table and the failures.
func (c Checker) CheckKeys(ctx context.Context, hosts []string) (nixdeploy.KeyReport, error) {
	rep, err := Check(ctx, c.Config, c.Store, hosts)
	if err != nil {
		return nixdeploy.KeyReport{}, err
	}
	var table strings.Builder
	if err := rep.Print(&table); err != nil {
		return nixdeploy.KeyReport{}, err
	}
	return nixdeploy.KeyReport{Table: table.String(), Failures: rep.Failures()}, nil
}
