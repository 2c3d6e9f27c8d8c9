package keys_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy/keys"
)

// Published vectors from github.com/Mic92/ssh-to-age. The key pair is that
// project's THROWAWAY test asset (cmd/ssh-to-age/test-assets/id_ed25519 and
// .pub), public on GitHub and protecting nothing; its README shows the
// identity and recipient ssh-to-age prints for it. The keyscan lines are
// test-assets/keyscan.txt, whose ed25519 keys the README's ssh-keyscan
// example converts to the two recipients below.
const (
	publishedPrivateKey = `-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACDh8/lNGLYyDXOeHWYiTXJX5hBYnxe0VwhZTZU27mQY4gAAAJjpEFzo6RBc
6AAAAAtzc2gtZWQyNTUxOQAAACDh8/lNGLYyDXOeHWYiTXJX5hBYnxe0VwhZTZU27mQY4g
AAAEDsBo0iLkC2U9CS5XgSo7zS/nQvjxaPfhfFCR+BshxoL+Hz+U0YtjINc54dZiJNclfm
EFifF7RXCFlNlTbuZBjiAAAAE2pvZXJnQHR1cmluZ21hY2hpbmUBAg==
-----END OPENSSH PRIVATE KEY-----
`
	publishedPublicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOHz+U0YtjINc54dZiJNclfmEFifF7RXCFlNlTbuZBji joerg@turingmachine\n"
	publishedIdentity  = "AGE-SECRET-KEY-1K3VN4N03PTHJWSJSCCMQCN33RY5FSKQPJ4KRRTG3JMQUYE0TUSEQEDH6V8"
	publishedRecipient = "age17044m9wgakla6pzftf4srtl3h5mcsr85jysgt5fg23zpnta8sfdqhzn452"

	publishedKeyscanEve = "eve.thalheim.io ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF/KPU3Z5LSjbBI6hrq25wCcseq2UpqSzUFZRr+ux6LM"
	publishedKeyscanEva = "eva.thalheim.io ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIL2vjdqpppuCn7yPdF2muINriAG7zBWrsELKpPWkhn5"
	publishedEveAge     = "age1hjm3aujg9e79f5yth8a2cejzdjg5n9vnu96l05p70uvfpeltnpms7yy3pp"
	publishedEvaAge     = "age1v8zjc47jmlqwefyu66s0d4ke98qr4vnuj3cpvs4z9npfdw833dxqwjrhzv"
)

func TestAgeRecipientPublishedVectors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"ssh-to-age README public key", publishedPublicKey, publishedRecipient},
		{"ssh-to-age README keyscan eve", publishedKeyscanEve, publishedEveAge},
		{"ssh-to-age README keyscan eva", publishedKeyscanEva, publishedEvaAge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pks, err := keys.ParsePublicKeys([]byte(tt.in))
			if err != nil || len(pks) != 1 {
				t.Fatalf("ParsePublicKeys = %v, %v", pks, err)
			}
			got, err := keys.AgeRecipient(pks[0].Key)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("AgeRecipient = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestSSHAgeIdentityPublishedVector(t *testing.T) {
	id, err := keys.SSHAgeIdentity([]byte(publishedPrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if id.String() != publishedIdentity {
		t.Errorf("identity = %s, want %s", id, publishedIdentity)
	}
	// age derives the recipient from the (unclamped) scalar itself, so this
	// also proves the two halves of the conversion agree.
	if got := id.Recipient().String(); got != publishedRecipient {
		t.Errorf("identity's recipient = %s, want %s", got, publishedRecipient)
	}
}

// TestConversionsAgree checks, for fresh keys, that the recipient from the
// public half equals the one age computes from the converted private half.
func TestConversionsAgree(t *testing.T) {
	for i := 0; i < 20; i++ {
		pub, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		r, err := keys.Ed25519AgeRecipient(pub)
		if err != nil {
			t.Fatal(err)
		}
		id, err := keys.Ed25519AgeIdentity(priv)
		if err != nil {
			t.Fatal(err)
		}
		if id.Recipient().String() != r {
			t.Fatalf("key %d: recipient %s, identity's recipient %s", i, r, id.Recipient())
		}
	}
}

func TestParsePublicKeys(t *testing.T) {
	const k = "AAAAC3NzaC1lZDI1NTE5AAAAIOHz+U0YtjINc54dZiJNclfmEFifF7RXCFlNlTbuZBji"
	tests := []struct {
		name       string
		in         string
		wantLines  []int
		wantHosts  []string
		wantMarker string
	}{
		{"pub file", "ssh-ed25519 " + k + " root@ganon\n", []int{1}, nil, ""},
		{"authorized_keys with options", `no-pty,command="echo hi" ssh-ed25519 ` + k + " op\n", []int{1}, nil, ""},
		{"known_hosts with patterns", "ganon,192.0.2.10 ssh-ed25519 " + k + "\n", []int{1}, []string{"ganon", "192.0.2.10"}, ""},
		{"known_hosts with port", "[ganon]:2222 ssh-ed25519 " + k + "\n", []int{1}, []string{"[ganon]:2222"}, ""},
		{"hashed known_hosts", "|1|F1E1KeoE/eEWhi10WpGv4OdiO6Y=|3988QV0VE8wmZL7suNrYQLITLCg= ssh-ed25519 " + k + "\n", []int{1},
			[]string{"|1|F1E1KeoE/eEWhi10WpGv4OdiO6Y=|3988QV0VE8wmZL7suNrYQLITLCg="}, ""},
		{"cert-authority marker", "@cert-authority *.example.org ssh-ed25519 " + k + "\n", []int{1}, []string{"*.example.org"}, "cert-authority"},
		{"revoked marker", "@revoked * ssh-ed25519 " + k + "\n", []int{1}, []string{"*"}, "revoked"},
		{"keyscan with comments and blanks", "# ganon:22 SSH-2.0-OpenSSH_9.8\n\n  \nganon ssh-ed25519 " + k + "\n# done\n", []int{4}, []string{"ganon"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := keys.ParsePublicKeys([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.wantLines) {
				t.Fatalf("got %d keys, want %d", len(got), len(tt.wantLines))
			}
			for i, g := range got {
				if g.Line != tt.wantLines[i] {
					t.Errorf("line = %d, want %d", g.Line, tt.wantLines[i])
				}
				if strings.Join(g.Hosts, " ") != strings.Join(tt.wantHosts, " ") {
					t.Errorf("hosts = %q, want %q", g.Hosts, tt.wantHosts)
				}
				if g.Marker != tt.wantMarker {
					t.Errorf("marker = %q, want %q", g.Marker, tt.wantMarker)
				}
				if r, err := keys.AgeRecipient(g.Key); err != nil || r != publishedRecipient {
					t.Errorf("AgeRecipient = %s, %v; want %s", r, err, publishedRecipient)
				}
			}
		})
	}
}

func TestParsePublicKeysErrors(t *testing.T) {
	_, err := keys.ParsePublicKeys([]byte("# fine\nssh-ed25519 AAAA-not-base64\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "line 2:") {
		t.Errorf("err = %v, want one naming line 2", err)
	}
}

func TestAgeRecipientUnsupported(t *testing.T) {
	dir := t.TempDir()
	for _, typ := range []string{"rsa", "ecdsa"} {
		t.Run(typ, func(t *testing.T) {
			p := sshKeygen(t, dir, typ, typ)
			pks, err := keys.ParsePublicKeys(readFile(t, p+".pub"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := keys.AgeRecipient(pks[0].Key); !errors.Is(err, keys.ErrUnsupportedKey) {
				t.Errorf("AgeRecipient = %v, want ErrUnsupportedKey", err)
			}
			if _, err := keys.SSHAgeIdentity(readFile(t, p)); !errors.Is(err, keys.ErrUnsupportedKey) {
				t.Errorf("SSHAgeIdentity = %v, want ErrUnsupportedKey", err)
			}
		})
	}
}

func TestSSHAgeIdentityPassphrase(t *testing.T) {
	p := filepath.Join(t.TempDir(), "id")
	runTool(t, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "correct horse", "-f", p)
	_, err := keys.SSHAgeIdentity(readFile(t, p))
	if !errors.Is(err, keys.ErrPassphrase) {
		t.Fatalf("err = %v, want ErrPassphrase", err)
	}
}

// TestErrorsHoldNoKeyMaterial feeds damaged private keys and checks that no
// error quotes any of their base64.
func TestErrorsHoldNoKeyMaterial(t *testing.T) {
	body := strings.Split(publishedPrivateKey, "\n")[2]
	damaged := map[string]string{
		"truncated":   strings.Replace(publishedPrivateKey, body+"\n", "", 1),
		"not pem":     body,
		"bad age key": "AGE-SECRET-KEY-1K3VN4N03PTHJWSJSCCMQCN33RY5FSKQPJ4KRRTG3JMQUYE0TUSEQEDH6V9",
	}
	for name, in := range damaged {
		t.Run(name, func(t *testing.T) {
			_, err := keys.IdentityFromKeyFile([]byte(in))
			if err == nil {
				t.Fatal("no error")
			}
			for _, frag := range []string{body[10:30], "K3VN4N03PTHJ"} {
				if strings.Contains(err.Error(), frag) {
					t.Errorf("error %q quotes key material", err)
				}
			}
		})
	}
}

// TestAgeCLIInterop checks the conversions against the real tools: a file
// encrypted by the age CLI to the recipient of a fresh ssh-keygen key
// decrypts with the identity converted from its private key, and age-keygen
// -y derives the same recipient from that identity.
func TestAgeCLIInterop(t *testing.T) {
	dir := t.TempDir()
	keyPath := sshKeygen(t, dir, "host_key", "ed25519")
	pks, err := keys.ParsePublicKeys(readFile(t, keyPath+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	recipient, err := keys.AgeRecipient(pks[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	id, err := keys.SSHAgeIdentity(readFile(t, keyPath))
	if err != nil {
		t.Fatal(err)
	}
	idPath := filepath.Join(dir, "identity.txt")
	writeFile(t, idPath, keys.FormatAgeIdentity(id, ""), 0o600)

	if got := strings.TrimSpace(string(runTool(t, nil, "age-keygen", "-y", idPath))); got != recipient {
		t.Errorf("age-keygen -y = %s, want %s", got, recipient)
	}

	secret := []byte("the plaintext\n")
	ct := runTool(t, secret, "age", "-r", recipient)
	if pt := runTool(t, ct, "age", "-d", "-i", idPath); !bytes.Equal(pt, secret) {
		t.Errorf("age -d = %q, want %q", pt, secret)
	}
	// And the library agrees with the CLI.
	r, err := age.Decrypt(bytes.NewReader(ct), id)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil || !bytes.Equal(buf.Bytes(), secret) {
		t.Errorf("age.Decrypt = %q, %v", buf.Bytes(), err)
	}
}

func TestParseSSHPrivateKeyMatchesPublic(t *testing.T) {
	priv, err := keys.ParseSSHPrivateKey([]byte(publishedPrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	spk, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	want, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(publishedPublicKey))
	if !bytes.Equal(spk.Marshal(), want.Marshal()) {
		t.Error("private key's public half differs from the published .pub")
	}
}

func TestMain(m *testing.M) {
	// Tests must not pick up an operator's identity from the environment.
	os.Unsetenv(keys.IdentityEnv)
	os.Exit(m.Run())
}
