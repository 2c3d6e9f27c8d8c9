package keys

// This file reads a sops-encrypted YAML file the way sops itself does, so
// the preflight can decrypt a host's secret with nothing but the host's own
// age identity: what sops-nix on the host will do at first boot. The format
// facts it relies on, from getsops/sops v3.13.3:
//
//   - Metadata (stores/stores.go, metadataFromInternal): the top-level key
//     "sops". With one key group its age entries sit flat under sops.age;
//     with several, under sops.key_groups[].age, with shamir_threshold.
//     lastmodified is RFC 3339. At most one of unencrypted_suffix,
//     encrypted_suffix, unencrypted_regex, encrypted_regex and the two
//     comment regexes is set; with none, unencrypted_suffix is
//     "_unencrypted" (metadata.ToInternal).
//   - The data key (sops.go, GetDataKeyWithKeyServices and
//     UpdateMasterKeysWithKeyServices): 32 random bytes. With one key group
//     every entry's enc (an armored age file, age/keysource.go Decrypt)
//     holds the key itself; with several, each group holds one Shamir
//     share (shamir/shamir.go: GF(2^8) with the AES polynomial, the share's
//     last byte is its x coordinate) and shamir_threshold shares are needed.
//   - Values (aes/cipher.go): ENC[AES256_GCM,data:…,iv:…,tag:…,type:…] is
//     AES-256-GCM under the data key with a nonce the length of iv (32
//     bytes), sealed text data‖tag, and additional data the key path joined
//     with ":" plus a trailing ":" (sops.go, Tree.Encrypt: pathString).
//     List items keep their parent's path (walkSlice). An empty value is
//     stored empty, unencrypted.
//   - The MAC (sops.go, Tree.Decrypt; cmd/sops/common/common.go,
//     DecryptTree): SHA-512 over every value's bytes in document order
//     (sops.ToBytes: strings as is, bools "True"/"False", ints and floats
//     formatted), comments excluded, prefixed with
//     MACOnlyEncryptedInitialization and limited to encrypted values when
//     mac_only_encrypted is set; upper-case hex; stored as an ENC value
//     whose additional data is lastmodified in RFC 3339.
//   - The YAML store (stores/yaml/store.go) decodes scalars with
//     go.yaml.in/yaml/v3 into interface{}, which this file uses too.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"
	"go.yaml.in/yaml/v3"
)

// ErrMACMismatch means the file's MAC does not match its values: it was
// edited without sops, or is damaged. sops refuses to decrypt such a file,
// and so does sops-nix.
var ErrMACMismatch = errors.New("MAC mismatch")

// ErrNotEncryptedTo means no age entry of the file opens with the given
// identity.
var ErrNotEncryptedTo = errors.New("not encrypted to this key")

// macOnlyEncryptedInit is sops.MACOnlyEncryptedInitialization (sops.go).
var macOnlyEncryptedInit = []byte{0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0xb, 0xb, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69}

// SopsFile is a sops-encrypted YAML file, parsed but not decrypted.
type SopsFile struct {
	Path string
	// data is the document's mapping without the sops key.
	data []*yaml.Node
	meta sopsMeta
}

type sopsAgeEntry struct {
	Recipient string `yaml:"recipient"`
	Enc       string `yaml:"enc"`
}

type sopsMeta struct {
	Age       []sopsAgeEntry `yaml:"age"`
	KeyGroups []struct {
		Age []sopsAgeEntry `yaml:"age"`
	} `yaml:"key_groups"`
	ShamirThreshold         int    `yaml:"shamir_threshold"`
	LastModified            string `yaml:"lastmodified"`
	MAC                     string `yaml:"mac"`
	UnencryptedSuffix       string `yaml:"unencrypted_suffix"`
	EncryptedSuffix         string `yaml:"encrypted_suffix"`
	UnencryptedRegex        string `yaml:"unencrypted_regex"`
	EncryptedRegex          string `yaml:"encrypted_regex"`
	UnencryptedCommentRegex string `yaml:"unencrypted_comment_regex"`
	EncryptedCommentRegex   string `yaml:"encrypted_comment_regex"`
	MACOnlyEncrypted        bool   `yaml:"mac_only_encrypted"`
}

// OpenSopsFile reads and parses path, a single YAML document. It does not
// depend on indentation or key order.
func OpenSopsFile(path string) (*SopsFile, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("secrets file %s does not exist; create it with sops (nixdeploy keys secrets-template prints its user-age-keys)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("read secrets file: %w", err)
	}
	var doc, next yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		// Only the position is useful; the rest may quote the file.
		return nil, fmt.Errorf("%s is not valid YAML: %s", path, yamlPosition(err))
	}
	if err := dec.Decode(&next); err == nil {
		// sops covers every document with one MAC; sops-nix reads one.
		return nil, fmt.Errorf("%s holds several YAML documents; sops-nix reads a single one", path)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s is not a YAML mapping; is it a sops file?", path)
	}
	f := &SopsFile{Path: path}
	var metaNode *yaml.Node
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "sops" {
			metaNode = m.Content[i+1]
			continue
		}
		f.data = append(f.data, m.Content[i], m.Content[i+1])
	}
	if metaNode == nil {
		return nil, fmt.Errorf("%s has no sops metadata; is it encrypted?", path)
	}
	if err := metaNode.Decode(&f.meta); err != nil {
		return nil, fmt.Errorf("%s: sops metadata: %s", path, yamlPosition(err))
	}
	return f, nil
}

// Recipients returns every age recipient the file's data key (or a share
// of it) is encrypted to.
func (f *SopsFile) Recipients() map[string]bool {
	out := map[string]bool{}
	for _, g := range f.groups() {
		for _, e := range g {
			out[strings.TrimSpace(e.Recipient)] = true
		}
	}
	return out
}

func (f *SopsFile) groups() [][]sopsAgeEntry {
	if len(f.meta.KeyGroups) > 0 {
		out := make([][]sopsAgeEntry, len(f.meta.KeyGroups))
		for i, g := range f.meta.KeyGroups {
			out[i] = g.Age
		}
		return out
	}
	return [][]sopsAgeEntry{f.meta.Age}
}

// ThresholdError means the data key is split into Shamir shares and the
// identity opens fewer groups than the threshold.
type ThresholdError struct {
	Groups, Threshold, Opened int
}

func (e *ThresholdError) Error() string {
	return fmt.Sprintf("the data key is split into %d key groups with shamir_threshold %d, and this key opens %d of them, so it cannot decrypt the file alone", e.Groups, e.Threshold, e.Opened)
}

// DataKey opens the file's 32-byte data key with id alone, as sops does
// (GetDataKeyWithKeyServices): one key group holds the key, several hold
// Shamir shares of which shamir_threshold are needed. The caller clears the
// key after use.
func (f *SopsFile) DataKey(id age.Identity) ([]byte, error) {
	groups := f.groups()
	var shares [][]byte
	for _, g := range groups {
		for _, e := range g {
			part, err := openAgeEntry(e.Enc, id)
			if err == nil {
				shares = append(shares, part)
				break
			}
		}
	}
	if len(groups) == 1 {
		if len(shares) == 0 {
			return nil, ErrNotEncryptedTo
		}
		if len(shares[0]) != 32 {
			return nil, fmt.Errorf("the data key is %d bytes, not 32", len(shares[0]))
		}
		return shares[0], nil
	}
	threshold := f.meta.ShamirThreshold
	if threshold == 0 {
		// What sops sets when it splits the key (UpdateMasterKeysWithKeyServices).
		threshold = len(groups)
	}
	if len(shares) == 0 {
		return nil, ErrNotEncryptedTo
	}
	if len(shares) < threshold || len(shares) < 2 {
		return nil, &ThresholdError{Groups: len(groups), Threshold: threshold, Opened: len(shares)}
	}
	key, err := shamirCombine(shares)
	if err != nil {
		return nil, err
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("the data key is %d bytes, not 32", len(key))
	}
	return key, nil
}

func openAgeEntry(enc string, id age.Identity) ([]byte, error) {
	r, err := age.Decrypt(armor.NewReader(strings.NewReader(enc)), id)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Value decrypts the string at path (nested mapping keys, as sops-nix's
// "a/b" names a: {b: …}) with the data key.
func (f *SopsFile) Value(key []byte, path ...string) (string, error) {
	nodes := f.data
	var node *yaml.Node
	for i, k := range path {
		node = nil
		for j := 0; j+1 < len(nodes); j += 2 {
			if nodes[j].Value == k {
				node = nodes[j+1]
				break
			}
		}
		if node == nil {
			return "", fmt.Errorf("%s: %w", strings.Join(path[:i+1], "/"), fs.ErrNotExist)
		}
		if node.Kind == yaml.AliasNode {
			node = node.Alias
		}
		if i < len(path)-1 {
			if node.Kind != yaml.MappingNode {
				return "", fmt.Errorf("%s is not a mapping", strings.Join(path[:i+1], "/"))
			}
			nodes = node.Content
		}
	}
	if node == nil || node.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("%s is not a single value", strings.Join(path, "/"))
	}
	if !f.encrypted(path) {
		return "", fmt.Errorf("%s is stored unencrypted", strings.Join(path, "/"))
	}
	plain, typ, err := decryptSopsValue(node.Value, key, sopsAAD(path))
	if err != nil {
		return "", fmt.Errorf("%s: %w", strings.Join(path, "/"), err)
	}
	if typ != "str" {
		return "", fmt.Errorf("%s is a %s, not a string", strings.Join(path, "/"), typ)
	}
	return string(plain), nil
}

// has reports whether the mapping path exists in the file.
func (f *SopsFile) has(path ...string) bool {
	nodes := f.data
	for i, k := range path {
		var node *yaml.Node
		for j := 0; j+1 < len(nodes); j += 2 {
			if nodes[j].Value == k {
				node = nodes[j+1]
				break
			}
		}
		if node == nil {
			return false
		}
		if node.Kind == yaml.AliasNode {
			node = node.Alias
		}
		if i < len(path)-1 {
			if node.Kind != yaml.MappingNode {
				return false
			}
			nodes = node.Content
		}
	}
	return true
}

// VerifyMAC recomputes the MAC over every value, as sops does before it
// decrypts anything, and compares it with the stored one.
func (f *SopsFile) VerifyMAC(key []byte) error {
	if f.meta.UnencryptedCommentRegex != "" || f.meta.EncryptedCommentRegex != "" {
		return errors.New("the file uses a comment regex, which the preflight does not read")
	}
	lm, err := time.Parse(time.RFC3339, f.meta.LastModified)
	if err != nil {
		return fmt.Errorf("sops.lastmodified %q is not RFC 3339", f.meta.LastModified)
	}
	stored, typ, err := decryptSopsValue(f.meta.MAC, key, lm.Format(time.RFC3339))
	if err != nil {
		return fmt.Errorf("%w: the stored MAC does not open (%v)", ErrMACMismatch, err)
	}
	if typ != "str" {
		return fmt.Errorf("%w: the stored MAC is a %s", ErrMACMismatch, typ)
	}
	h := sha512.New()
	if f.meta.MACOnlyEncrypted {
		h.Write(macOnlyEncryptedInit)
	}
	var walk func(nodes []*yaml.Node, path []string, mapping bool) error
	leaf := func(n *yaml.Node, path []string) error {
		enc := f.encrypted(path)
		if f.meta.MACOnlyEncrypted && !enc {
			return nil
		}
		var b []byte
		if enc {
			plain, typ, err := decryptSopsValue(n.Value, key, sopsAAD(path))
			if err != nil {
				return fmt.Errorf("%w: %s does not decrypt", ErrMACMismatch, strings.Join(path, "/"))
			}
			if typ == "comment" {
				return nil
			}
			b, err = canonicalBytes(typ, plain)
			if err != nil {
				return fmt.Errorf("%s: %w", strings.Join(path, "/"), err)
			}
		} else {
			var v any
			if err := n.Decode(&v); err != nil {
				return fmt.Errorf("%s: %s", strings.Join(path, "/"), yamlPosition(err))
			}
			b, err = toBytes(v)
			if err != nil {
				return fmt.Errorf("%s: %w", strings.Join(path, "/"), err)
			}
		}
		h.Write(b)
		return nil
	}
	walk = func(nodes []*yaml.Node, path []string, mapping bool) error {
		step := 1
		if mapping {
			step = 2
		}
		for i := 0; i+step-1 < len(nodes); i += step {
			p := path
			n := nodes[i]
			if mapping {
				p = append(append([]string(nil), path...), nodes[i].Value)
				n = nodes[i+1]
			}
			if n.Kind == yaml.AliasNode {
				n = n.Alias
			}
			var err error
			switch n.Kind {
			case yaml.MappingNode:
				err = walk(n.Content, p, true)
			case yaml.SequenceNode:
				err = walk(n.Content, p, false)
			case yaml.ScalarNode:
				err = leaf(n, p)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(f.data, nil, true); err != nil {
		return err
	}
	got := fmt.Sprintf("%X", h.Sum(nil))
	if string(stored) != got {
		return fmt.Errorf("%w: the values do not match the stored MAC (edited without sops?)", ErrMACMismatch)
	}
	return nil
}

// encrypted is sops's Tree.shouldBeEncrypted without the comment rules.
func (f *SopsFile) encrypted(path []string) bool {
	m := f.meta
	if m.UnencryptedSuffix == "" && m.EncryptedSuffix == "" && m.UnencryptedRegex == "" && m.EncryptedRegex == "" {
		m.UnencryptedSuffix = "_unencrypted"
	}
	enc := true
	if m.UnencryptedSuffix != "" {
		for _, k := range path {
			if strings.HasSuffix(k, m.UnencryptedSuffix) {
				enc = false
				break
			}
		}
	}
	if m.EncryptedSuffix != "" {
		enc = false
		for _, k := range path {
			if strings.HasSuffix(k, m.EncryptedSuffix) {
				enc = true
				break
			}
		}
	}
	if m.UnencryptedRegex != "" {
		re, err := regexp.Compile(m.UnencryptedRegex)
		for _, k := range path {
			if err == nil && re.MatchString(k) {
				enc = false
				break
			}
		}
	}
	if m.EncryptedRegex != "" {
		enc = false
		re, err := regexp.Compile(m.EncryptedRegex)
		for _, k := range path {
			if err == nil && re.MatchString(k) {
				enc = true
				break
			}
		}
	}
	return enc
}

// sopsAAD is the additional data of the value at path (sops.go pathString).
func sopsAAD(path []string) string { return strings.Join(path, ":") + ":" }

var sopsValueRE = regexp.MustCompile(`^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]`)

// decryptSopsValue is aes/cipher.go's Decrypt: it returns the plaintext
// bytes and the type tag. An empty value is the empty string.
func decryptSopsValue(value string, key []byte, aad string) ([]byte, string, error) {
	if value == "" {
		return nil, "str", nil
	}
	m := sopsValueRE.FindStringSubmatch(value)
	if m == nil {
		return nil, "", errors.New("not an ENC[AES256_GCM,…] value")
	}
	var parts [3][]byte
	for i := range parts {
		b, err := base64.StdEncoding.DecodeString(m[i+1])
		if err != nil {
			return nil, "", errors.New("bad base64 in an ENC value")
		}
		parts[i] = b
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, "", err
	}
	if len(parts[1]) == 0 {
		return nil, "", errors.New("empty iv in an ENC value")
	}
	gcm, err := cipher.NewGCMWithNonceSize(block, len(parts[1]))
	if err != nil {
		return nil, "", err
	}
	plain, err := gcm.Open(nil, parts[1], append(parts[0], parts[2]...), []byte(aad))
	if err != nil {
		return nil, "", errors.New("AES-GCM authentication failed")
	}
	return plain, m[4], nil
}

// canonicalBytes is sops.ToBytes of the value aes/cipher.go's Decrypt
// returns for typ.
func canonicalBytes(typ string, plain []byte) ([]byte, error) {
	s := string(plain)
	switch typ {
	case "str", "bytes":
		return plain, nil
	case "int":
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("bad int value")
		}
		return []byte(strconv.Itoa(n)), nil
	case "float":
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("bad float value")
		}
		return []byte(strconv.FormatFloat(v, 'f', -1, 64)), nil
	case "bool":
		v, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("bad bool value")
		}
		return toBytes(v)
	case "time":
		var t time.Time
		if err := t.UnmarshalText(plain); err != nil {
			return nil, fmt.Errorf("bad time value")
		}
		return t.MarshalText()
	}
	return nil, fmt.Errorf("unknown value type %q", typ)
}

// toBytes is sops.ToBytes for an unencrypted value.
func toBytes(v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return []byte(v), nil
	case int:
		return []byte(strconv.Itoa(v)), nil
	case float64:
		return []byte(strconv.FormatFloat(v, 'f', -1, 64)), nil
	case bool:
		if v {
			return []byte("True"), nil
		}
		return []byte("False"), nil
	case []byte:
		return v, nil
	case time.Time:
		return v.MarshalText()
	}
	return nil, fmt.Errorf("unsupported value type %T", v)
}

// shamirCombine recovers a secret from Shamir shares made by sops's
// shamir.Split: each share is the y values followed by one x byte, over
// GF(2^8) with the AES polynomial x^8+x^4+x^3+x+1; the secret is the
// polynomial's value at 0 (Lagrange interpolation).
func shamirCombine(shares [][]byte) ([]byte, error) {
	n := len(shares[0])
	if n < 2 {
		return nil, errors.New("shamir share too short")
	}
	xs := make([]byte, len(shares))
	for i, s := range shares {
		if len(s) != n {
			return nil, errors.New("shamir shares differ in length")
		}
		xs[i] = s[n-1]
		for j := range i {
			if xs[j] == xs[i] {
				return nil, errors.New("duplicate shamir share")
			}
		}
	}
	secret := make([]byte, n-1)
	for b := range secret {
		var acc byte
		for i := range shares {
			basis := byte(1)
			for j := range shares {
				if i != j {
					// At x = 0: (0 - xj) / (xi - xj), and minus is xor.
					basis = gfMul(basis, gfMul(xs[j], gfInv(xs[i]^xs[j])))
				}
			}
			acc ^= gfMul(shares[i][b], basis)
		}
		secret[b] = acc
	}
	return secret, nil
}

func gfMul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		hi := a & 0x80
		a <<= 1
		if hi != 0 {
			a ^= 0x1b
		}
		b >>= 1
	}
	return p
}

// gfInv is a^254, the inverse of a non-zero a in GF(2^8).
func gfInv(a byte) byte {
	r := byte(1)
	for range 254 {
		r = gfMul(r, a)
	}
	return r
}
