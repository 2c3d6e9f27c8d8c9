package deployer

import (
	"log/slog"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"strings"
	"testing"
)

func TestRedactor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		secrets []string
		in, out []string
	}{
		{
			name: "pem block across lines",
			in:   []string{"key:", "-----BEGIN OPENSSH PRIVATE KEY-----", "b3BlbnNzaC1rZXktdjEA", "AAAAB3NzaC1yc2E", "-----END OPENSSH PRIVATE KEY-----", "done"},
			out:  []string{"key:", "-----BEGIN OPENSSH PRIVATE KEY-----", Redacted, Redacted, Redacted + "-----END OPENSSH PRIVATE KEY-----", "done"},
		},
		{
			name: "pem on one line",
			in:   []string{`{"k": "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n"}`},
			out:  []string{`{"k": "-----BEGIN RSA PRIVATE KEY-----` + Redacted + `-----END RSA PRIVATE KEY-----\n"}`},
		},
		{
			name: "begin with trailing text",
			in:   []string{"x -----BEGIN PRIVATE KEY-----MIIEvQIBADANBg", "MIIEvQIBADANBg", "-----END PRIVATE KEY----- tail"},
			out:  []string{"x -----BEGIN PRIVATE KEY-----" + Redacted, Redacted, Redacted + "-----END PRIVATE KEY----- tail"},
		},
		{
			name: "unterminated block stays redacted",
			in:   []string{"-----BEGIN EC PRIVATE KEY-----", "MHcCAQEEI", "more"},
			out:  []string{"-----BEGIN EC PRIVATE KEY-----", Redacted, Redacted},
		},
		{
			name: "public material passes",
			in:   []string{"-----BEGIN AGE ENCRYPTED FILE-----", "YWdlLWVuY3J5cHRpb24", "-----END AGE ENCRYPTED FILE-----", "ssh-ed25519 AAAAC3Nza root@h"},
			out:  []string{"-----BEGIN AGE ENCRYPTED FILE-----", "YWdlLWVuY3J5cHRpb24", "-----END AGE ENCRYPTED FILE-----", "ssh-ed25519 AAAAC3Nza root@h"},
		},
		{
			name: "age identities",
			in:   []string{"id: AGE-SECRET-KEY-1QQQSYQCYQ5RQWZQFPG9SCRGW and age-secret-key-1qqqsyqcyq5rq, age1qqqsyq stays"},
			out:  []string{"id: " + Redacted + " and " + Redacted + ", age1qqqsyq stays"},
		},
		{
			name:    "configured values, longest first, short ones ignored",
			secrets: []string{"hunter2-long", "hunter2-long-longer", "ab", "multi\nline-secret"},
			in:      []string{"a hunter2-long-longer b hunter2-long c ab multi line-secret"},
			out:     []string{"a " + Redacted + " b " + Redacted + " c ab " + Redacted + " " + Redacted},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRedactor(tc.secrets)
			var got []string
			for _, l := range tc.in {
				got = append(got, r.line("s", l))
			}
			if strings.Join(got, "\n") != strings.Join(tc.out, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.out, "\n"))
			}
		})
	}
}

// TestRedactorStreams: a block open on one stream does not swallow the
// other stream's lines.
func TestRedactorStreams(t *testing.T) {
	r := newRedactor(nil)
	r.line("stdout", "-----BEGIN OPENSSH PRIVATE KEY-----")
	if got := r.line("stderr", "ordinary"); got != "ordinary" {
		t.Errorf("stderr line = %q", got)
	}
	if got := r.line("stdout", "b3BlbnNzaC1rZXktdjEA"); got != Redacted {
		t.Errorf("stdout line = %q", got)
	}
}

func TestPhaseMarker(t *testing.T) {
	for in, want := range map[string]string{
		"### Installing NixOS ###": "Installing NixOS",
		"  ### Done! ###  ":        "Done!",
		"### ###":                  "",
		"## Installing ##":         "",
		"echo ### Done! ###":       "",
		"\u00a0### Done! ###\t" + strings.Repeat(" ", 90): "Done!",
		"###    ":                               "",
		"### \u2003 ###":                        "",
		"line 7 of 9" + strings.Repeat(" ", 88): "",
	} {
		got, ok := phaseMarker(in)
		if got != want || ok != (want != "") {
			t.Errorf("phaseMarker(%q) = %q, %v", in, got, ok)
		}
		// The same as trimming the whole line first, as it once did.
		old, oldOK := "", false
		if s := strings.TrimSpace(in); len(s) >= 9 && strings.HasPrefix(s, "### ") && strings.HasSuffix(s, " ###") {
			old = strings.TrimSpace(s[4 : len(s)-4])
			oldOK = old != ""
		}
		if got != old || ok != oldOK {
			t.Errorf("phaseMarker(%q) = %q, %v; trimming first gives %q, %v", in, got, ok, old, oldOK)
		}
	}
}

// TestRedactAcrossLineSplit: a secret that straddles the reader's 64 KiB
// split, at every offset of the split within it, reaches neither a sink
// nor the store, not even a piece of it; the output around it is kept
// byte for byte. Issue 15, attack 2: 65,528 bytes, then the secret.
func TestRedactAcrossLineSplit(t *testing.T) {
	const maxLine = 64 << 10
	ageKey := "AGE-SECRET-KEY-1" + strings.Repeat("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 2)[:58]
	envValue := "redact-env-value-9f8e7d6c5b4a39281706"
	for _, secret := range []string{ageKey, envValue} {
		for _, off := range []int{1, 7, 8, len(secret) / 2, len(secret) - 1} {
			o := Options{Now: time.Now, FlushLines: 100, FlushInterval: time.Hour, MaxLineBytes: maxLine}
			store := &recStore{}
			o.Store = store
			sink := &batchRec{}
			e := newEmitter(t.Context(), &o, 1, newRedactor([]string{envValue}), []Sink{sink}, slog.New(slog.DiscardHandler))
			head := strings.Repeat("x", maxLine-off)
			out := head + secret + " tail\nnext line " + secret + "\n" + strings.Repeat("y", 2*maxLine-off) + secret
			readLines(strings.NewReader(out), maxLine, func(b []byte) { e.line("h", "s", nixdeploy.StreamStdout, b) })
			e.barrier()
			if err := e.close(); err != nil {
				t.Fatal(err)
			}
			for name, got := range map[string][]nixdeploy.LogLine{"sink": sink.lines, "store": store.lines} {
				var all strings.Builder
				for _, l := range got {
					all.WriteString(l.Text)
				}
				s := all.String()
				// No piece of the secret long enough to mean anything.
				for i := 0; i+8 <= len(secret); i++ {
					if strings.Contains(s, secret[i:i+8]) {
						t.Fatalf("offset %d: %s holds %q of the secret", off, name, secret[i:i+8])
					}
				}
				want := head + Redacted + " tail" + "next line " + Redacted + strings.Repeat("y", 2*maxLine-off) + Redacted
				if s != want {
					t.Errorf("offset %d: %s text differs from the redacted output (%d bytes, want %d)", off, name, len(s), len(want))
				}
			}
		}
	}
}
