package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"
	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy"
)

// IdentityEnv names the environment variable that holds the bot's age
// identity (the text of an age-keygen file). It overrides
// keys.age_identity_file so a secret store such as fly secrets can supply it.
const IdentityEnv = "NIXDEPLOY_AGE_IDENTITY"

// SealedSuffix marks a file of the key store that is encrypted with age.
const SealedSuffix = ".age"

// File names inside the key directory.
const (
	hostKeySuffix   = "_ssh_host_ed25519_key"
	userKeySuffix   = "_user_age_key"
	diskKeySuffix   = "_disk_key"
	initrdKeySuffix = "_initrd_ssh_host_ed25519_key"
)

// ErrNoKey means neither the plaintext nor the sealed form of a key exists.
var ErrNoKey = errors.New("key not found")

// ErrNoIdentity means a sealed key was found but no age identity is
// configured to open it.
var ErrNoIdentity = errors.New("no age identity configured: set " + IdentityEnv + " or keys.age_identity_file")

// ModeError is a plaintext secret that other users can read. OpenSSH refuses
// such a host key, and so does the store.
type ModeError struct {
	Path string
	Mode fs.FileMode
}

func (e *ModeError) Error() string {
	return fmt.Sprintf("private key is readable by group/others (mode %04o); run chmod 600 %s", e.Mode.Perm(), e.Path)
}

// Store is the directory of pre-generated keys. Each secret in it is kept
// either as plaintext (mode 0600) or sealed with age as <name>.age; every
// reader accepts both. Sealed files are decrypted in memory only.
type Store struct {
	// Dir is the key directory (keys.dir).
	Dir string
	// Identities open sealed files. Without them only plaintext keys work.
	Identities []age.Identity
	// Now stamps the "# created:" line of new age identities.
	Now func() time.Time
}

// NewStore returns a store over dir that opens sealed files with ids.
func NewStore(dir string, ids []age.Identity) *Store {
	return &Store{Dir: dir, Identities: ids, Now: time.Now}
}

// OpenStore opens the key store of cfg with the bot's identity, if one is
// configured (see LoadIdentities). A configured but unusable identity is an
// error; no identity at all is not, until a sealed key is read.
func OpenStore(cfg *nixdeploy.Config) (*Store, error) {
	ids, err := LoadIdentities(cfg)
	if err != nil && !errors.Is(err, ErrNoIdentity) {
		return nil, err
	}
	return NewStore(cfg.Keys.Dir, ids), nil
}

// LoadIdentities reads the bot's age identities from $NIXDEPLOY_AGE_IDENTITY
// or, when that is unset, from cfg.Keys.AgeIdentityFile (cfg may be nil). It
// returns ErrNoIdentity when neither is set.
func LoadIdentities(cfg *nixdeploy.Config) ([]age.Identity, error) {
	if text, ok := os.LookupEnv(IdentityEnv); ok && strings.TrimSpace(text) != "" {
		ids, err := age.ParseIdentities(strings.NewReader(text))
		if err != nil {
			// age's parse errors can quote a fragment of the key.
			return nil, fmt.Errorf("%s does not hold a valid age identity", IdentityEnv)
		}
		return ids, nil
	}
	if cfg == nil || cfg.Keys.AgeIdentityFile == "" {
		return nil, ErrNoIdentity
	}
	data, err := os.ReadFile(cfg.Keys.AgeIdentityFile)
	if err != nil {
		return nil, fmt.Errorf("read age identity: %w", err)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s is not a valid age identity file", cfg.Keys.AgeIdentityFile)
	}
	return ids, nil
}

// IdentityRecipients returns the recipients of ids that age can encrypt to:
// the default target of Seal.
func IdentityRecipients(ids []age.Identity) []age.Recipient {
	var out []age.Recipient
	for _, id := range ids {
		switch id := id.(type) {
		case *age.X25519Identity:
			out = append(out, id.Recipient())
		case *age.HybridIdentity:
			out = append(out, id.Recipient())
		}
	}
	return out
}

// HostKeyPath is the plaintext path of host's SSH private key; the public
// half is HostKeyPath+".pub" and the sealed form HostKeyPath+".age".
func (s *Store) HostKeyPath(host string) string {
	return filepath.Join(s.Dir, host+hostKeySuffix)
}

// HostPubPath is the path of host's SSH public key.
func (s *Store) HostPubPath(host string) string { return s.HostKeyPath(host) + ".pub" }

// UserKeyPath is the plaintext path of host's user age identity.
func (s *Store) UserKeyPath(host string) string {
	return filepath.Join(s.Dir, host+userKeySuffix)
}

// DiskKeyPath is the plaintext path of host's LUKS passphrase, the file
// nixos-anywhere uploads with --disk-encryption-keys.
func (s *Store) DiskKeyPath(host string) string {
	return filepath.Join(s.Dir, host+diskKeySuffix)
}

// InitrdKeyPath is the plaintext path of host's initrd SSH host key, a
// different key from the main host key; its public half is
// InitrdKeyPath+".pub".
func (s *Store) InitrdKeyPath(host string) string {
	return filepath.Join(s.Dir, host+initrdKeySuffix)
}

// DiskKey returns host's LUKS passphrase, read from the plaintext file
// (0600) or decrypted from the sealed one. The caller should clear it after
// use.
func (s *Store) DiskKey(host string) ([]byte, error) {
	sec, err := s.readPrivate(s.DiskKeyPath(host))
	if err != nil {
		return nil, err
	}
	if len(sec.Data) == 0 {
		return nil, fmt.Errorf("%s: the disk key is empty", sec.Path)
	}
	return sec.Data, nil
}

// InitrdHostPrivateKey returns host's initrd SSH host key in OpenSSH PEM
// form. The caller should clear it after use.
func (s *Store) InitrdHostPrivateKey(host string) ([]byte, error) {
	return s.sshPrivateKey(s.InitrdKeyPath(host))
}

// sshPrivateKey reads the private key at plain (or plain.age) and checks
// that it parses.
func (s *Store) sshPrivateKey(plain string) ([]byte, error) {
	sec, err := s.readPrivate(plain)
	if err != nil {
		return nil, err
	}
	if _, err := ParseSSHPrivateKey(sec.Data); err != nil {
		clear(sec.Data)
		return nil, fmt.Errorf("%s: %w", sec.Path, err)
	}
	return sec.Data, nil
}

// InitrdHostPublicKey returns the pinned initrd host key from its .pub file.
func (s *Store) InitrdHostPublicKey(host string) (ssh.PublicKey, error) {
	return readPublicKey(s.InitrdKeyPath(host) + ".pub")
}

// secret is a key file read from the store.
type secret struct {
	// Path is the file that was read: plaintext or sealed.
	Path   string
	Sealed bool
	// Mode is the plaintext file's permission bits.
	Mode fs.FileMode
	Data []byte
}

// readSecret reads plain or plain+".age", without judging the file mode.
// Having both is an error: one of them is stale and the store cannot tell
// which.
func (s *Store) readSecret(plain string) (*secret, error) {
	sealed := plain + SealedSuffix
	pfi, perr := os.Stat(plain)
	_, serr := os.Stat(sealed)
	switch {
	case perr == nil && serr == nil:
		return nil, fmt.Errorf("both %s and %s exist; remove the stale one (nixdeploy keys seal finishes an interrupted seal)", plain, filepath.Base(sealed))
	case perr == nil:
		data, err := os.ReadFile(plain)
		if err != nil {
			return nil, fmt.Errorf("read key: %w", err)
		}
		return &secret{Path: plain, Mode: pfi.Mode().Perm(), Data: data}, nil
	case serr == nil:
		data, err := s.decryptFile(sealed)
		if err != nil {
			return nil, err
		}
		return &secret{Path: sealed, Sealed: true, Data: data}, nil
	case errors.Is(perr, fs.ErrNotExist) && errors.Is(serr, fs.ErrNotExist):
		return nil, fmt.Errorf("%s: %w", plain, ErrNoKey)
	case !errors.Is(perr, fs.ErrNotExist):
		return nil, fmt.Errorf("stat key: %w", perr)
	default:
		return nil, fmt.Errorf("stat key: %w", serr)
	}
}

// readPrivate is readSecret plus the 0600 rule for plaintext.
func (s *Store) readPrivate(plain string) (*secret, error) {
	sec, err := s.readSecret(plain)
	if err != nil {
		return nil, err
	}
	if !sec.Sealed && sec.Mode&0o077 != 0 {
		return nil, &ModeError{Path: sec.Path, Mode: sec.Mode}
	}
	return sec, nil
}

// decryptFile opens a sealed file, armored or binary, in memory.
func (s *Store) decryptFile(path string) ([]byte, error) {
	if len(s.Identities) == 0 {
		return nil, fmt.Errorf("%s is sealed: %w", path, ErrNoIdentity)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open sealed key: %w", err)
	}
	defer f.Close()
	data, err := Decrypt(f, s.Identities)
	if err != nil {
		return nil, fmt.Errorf("decrypt %s: %w", path, err)
	}
	return data, nil
}

// Decrypt reads an age file, armored or binary, into memory.
func Decrypt(r io.Reader, ids []age.Identity) ([]byte, error) {
	br := newPeekReader(r)
	var src io.Reader = br
	if br.hasPrefix(armor.Header) {
		src = armor.NewReader(br)
	}
	dr, err := age.Decrypt(src, ids...)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(dr, 1<<20))
}

// HostPrivateKey returns host's SSH private key in OpenSSH PEM form, read
// from the plaintext file (which must not be readable by group or others) or
// decrypted from the sealed one. The caller should clear it after use.
func (s *Store) HostPrivateKey(host string) ([]byte, error) {
	return s.sshPrivateKey(s.HostKeyPath(host))
}

// HostSigner returns host's SSH private key as a signer, for example to serve
// it from a test sshd or to prove possession.
func (s *Store) HostSigner(host string) (ssh.Signer, error) {
	pemBytes, err := s.HostPrivateKey(host)
	if err != nil {
		return nil, err
	}
	defer clear(pemBytes)
	priv, err := ParseSSHPrivateKey(pemBytes)
	if err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

// HostPublicKey returns the pinned host key from host's .pub file.
func (s *Store) HostPublicKey(host string) (ssh.PublicKey, error) {
	return readPublicKey(s.HostPubPath(host))
}

// readPublicKey reads an authorized_keys-style .pub file.
func readPublicKey(path string) (ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", path, ErrNoKey)
	}
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pk, nil
}

// HostAgeRecipient is the age recipient sops-nix derives from host's key.
func (s *Store) HostAgeRecipient(host string) (string, error) {
	pk, err := s.HostPublicKey(host)
	if err != nil {
		return "", err
	}
	r, err := AgeRecipient(pk)
	if err != nil {
		return "", fmt.Errorf("%s: %w", s.HostPubPath(host), err)
	}
	return r, nil
}

// UserIdentity returns host's per-host user age identity, the key sops-nix
// places in the user's ~/.config/sops/age/keys.txt.
func (s *Store) UserIdentity(host string) (*age.X25519Identity, error) {
	sec, err := s.readPrivate(s.UserKeyPath(host))
	if err != nil {
		return nil, err
	}
	defer clear(sec.Data)
	return parseSingleX25519(sec.Path, sec.Data)
}

func parseSingleX25519(path string, data []byte) (*age.X25519Identity, error) {
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil || len(ids) != 1 {
		return nil, fmt.Errorf("%s does not hold exactly one age identity", path)
	}
	id, ok := ids[0].(*age.X25519Identity)
	if !ok {
		return nil, fmt.Errorf("%s does not hold an X25519 age identity", path)
	}
	return id, nil
}

// exists reports whether path or its sealed form exists.
func exists(path string) (plain, sealed bool) {
	_, err := os.Lstat(path)
	plain = err == nil
	_, err = os.Lstat(path + SealedSuffix)
	sealed = err == nil
	return plain, sealed
}

// Change is one file a store operation looked at.
type Change struct {
	Path string
	// Action is "created", "derived", "sealed" or "unchanged".
	Action string
	// Err is set when this item failed; other items still ran.
	Err error
}

// Seal encrypts host's plaintext secrets (SSH host key and user age
// identity, and the disk key and initrd host key where the host has them) to
// recipients as <name>.age, and removes each plaintext only after the sealed
// file was read back with the store's identities and matched it byte for
// byte. An interrupted earlier seal, with both forms present and equal, is
// finished.
func (s *Store) Seal(ctx context.Context, host string, recipients []age.Recipient) ([]Change, error) {
	if len(recipients) == 0 {
		return nil, errors.New("seal: no recipients")
	}
	var out []Change
	for _, plain := range []string{s.HostKeyPath(host), s.UserKeyPath(host), s.DiskKeyPath(host), s.InitrdKeyPath(host)} {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		if plain == s.DiskKeyPath(host) || plain == s.InitrdKeyPath(host) {
			// Optional keys: only LUKS and initrd_ssh hosts have them.
			if p, sealed := exists(plain); !p && !sealed {
				continue
			}
		}
		action, err := s.seal(plain, recipients)
		out = append(out, Change{Path: plain, Action: action, Err: err})
	}
	return out, nil
}

func (s *Store) seal(plain string, recipients []age.Recipient) (string, error) {
	sealed := plain + SealedSuffix
	hasPlain, hasSealed := exists(plain)
	switch {
	case !hasPlain && hasSealed:
		return "unchanged", nil
	case !hasPlain:
		return "", fmt.Errorf("%s: %w", plain, ErrNoKey)
	}
	data, err := os.ReadFile(plain)
	if err != nil {
		return "", fmt.Errorf("read key: %w", err)
	}
	defer clear(data)
	if !hasSealed {
		var buf bytes.Buffer
		aw := armor.NewWriter(&buf)
		w, err := age.Encrypt(aw, recipients...)
		if err != nil {
			return "", fmt.Errorf("encrypt %s: %w", plain, err)
		}
		if _, err := w.Write(data); err != nil {
			return "", fmt.Errorf("encrypt %s: %w", plain, err)
		}
		if err := w.Close(); err != nil {
			return "", fmt.Errorf("encrypt %s: %w", plain, err)
		}
		if err := aw.Close(); err != nil {
			return "", fmt.Errorf("encrypt %s: %w", plain, err)
		}
		if err := writeExclusive(sealed, buf.Bytes(), 0o600); err != nil {
			return "", err
		}
	}
	got, err := s.decryptFile(sealed)
	if err != nil {
		if !hasSealed {
			// Leave nothing that the bot itself could not open.
			os.Remove(sealed)
		}
		return "", fmt.Errorf("%w; the plaintext is kept (is the bot's own recipient among --recipient?)", err)
	}
	defer clear(got)
	if !bytes.Equal(got, data) {
		return "", fmt.Errorf("%s and %s differ; remove the stale one", plain, filepath.Base(sealed))
	}
	if err := os.Remove(plain); err != nil {
		return "", fmt.Errorf("remove plaintext: %w", err)
	}
	return "sealed", nil
}
