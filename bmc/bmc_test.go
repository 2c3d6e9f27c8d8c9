package bmc_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bmc"
	"github.com/nixdeploy/nixdeploy/internal/bmcfake"
)

const (
	user     = "root"
	password = "correct horse battery staple"
)

// clock is a settable time for token expiry.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newFake(t *testing.T, o bmcfake.Options) *bmcfake.BMC {
	t.Helper()
	if o.User == "" {
		o.User, o.Password = user, password
	}
	f := bmcfake.New(o)
	t.Cleanup(f.Close)
	return f
}

func newClient(t *testing.T, f *bmcfake.BMC, mod func(*bmc.Options)) *bmc.Client {
	t.Helper()
	o := bmc.Options{Board: "turingpi", Address: f.Address(), User: user, Password: password,
		CertSHA256: f.Fingerprint(), Timeout: 10 * time.Second, PollInterval: time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	c, err := bmc.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPower(t *testing.T) {
	var resets []int
	f := newFake(t, bmcfake.Options{Power: [4]bool{true, false, true, true}, OnReset: func(n int) { resets = append(resets, n) }})
	c := newClient(t, f, nil)
	ctx := t.Context()

	st, err := c.PowerStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := [4]nixdeploy.PowerState{nixdeploy.PowerStateOn, nixdeploy.PowerStateOff, nixdeploy.PowerStateOn, nixdeploy.PowerStateOn}; st != want {
		t.Errorf("status %v, want %v", st, want)
	}
	if err := c.SetPower(ctx, 2, true); err != nil {
		t.Fatal(err)
	}
	if err := c.SetPower(ctx, 3, false); err != nil {
		t.Fatal(err)
	}
	if !f.Power(2) || f.Power(3) || !f.Power(1) || !f.Power(4) {
		t.Errorf("after on 2, off 3: power %v %v %v %v", f.Power(1), f.Power(2), f.Power(3), f.Power(4))
	}
	if err := c.Reset(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if len(resets) != 1 || resets[0] != 3 || !f.Power(3) {
		t.Errorf("resets %v, slot 3 on %v; want [3], on", resets, f.Power(3))
	}
	// One login serves every call, and every API call carried the token.
	if f.Logins() != 1 {
		t.Errorf("%d logins, want 1", f.Logins())
	}
	for _, r := range f.Requests() {
		if r.Path == "/api/bmc" && r.Auth != "Bearer" {
			t.Errorf("%v without a bearer token", r.Query)
		}
	}
}

func TestUART(t *testing.T) {
	f := newFake(t, bmcfake.Options{})
	c := newClient(t, f, nil)
	f.WriteUART(3, "U-Boot 2024.01\r\nStarting kernel ...\r\n")
	f.WriteUART(1, "other node\n")
	got, err := c.UART(t.Context(), 3)
	if err != nil {
		t.Fatal(err)
	}
	if got != "U-Boot 2024.01\r\nStarting kernel ...\r\n" {
		t.Errorf("uart = %q", got)
	}
	// The ring keeps the last 16 KiB.
	f.WriteUART(3, strings.Repeat("x", 20000)+"tail")
	got, err = c.UART(t.Context(), 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != bmcfake.UARTBuffer || !strings.HasSuffix(got, "tail") {
		t.Errorf("uart is %d bytes ending %q, want %d ending tail", len(got), got[len(got)-4:], bmcfake.UARTBuffer)
	}
}

func TestWrongSlot(t *testing.T) {
	f := newFake(t, bmcfake.Options{})
	c := newClient(t, f, nil)
	ctx := t.Context()
	for name, call := range map[string]func() error{
		"on 5":    func() error { return c.SetPower(ctx, 5, true) },
		"off 0":   func() error { return c.SetPower(ctx, 0, false) },
		"reset 5": func() error { return c.Reset(ctx, 5) },
		"uart 0":  func() error { _, err := c.UART(ctx, 0); return err },
		"flash 9": func() error {
			return c.Flash(ctx, 9, bmc.Image{Name: "x.img", Size: 1, Body: strings.NewReader("x")}, nil)
		},
	} {
		if err := call(); !errors.Is(err, bmc.ErrSlot) {
			t.Errorf("%s: err = %v, want ErrSlot", name, err)
		}
	}
	if n := len(f.Requests()); n != 0 {
		t.Errorf("%d requests reached the BMC for bad slots", n)
	}
}

func TestTokenExpiry(t *testing.T) {
	clk := &clock{now: time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)}
	f := newFake(t, bmcfake.Options{Now: clk.Now, TokenTTL: time.Hour})
	c := newClient(t, f, nil)
	ctx := t.Context()
	if err := c.Authenticate(ctx); err != nil {
		t.Fatal(err)
	}
	// Use within the TTL slides the expiry, as bmcd's does.
	clk.Add(50 * time.Minute)
	if _, err := c.PowerStatus(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Add(50 * time.Minute)
	if _, err := c.PowerStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if f.Logins() != 1 {
		t.Fatalf("%d logins before expiry, want 1", f.Logins())
	}
	clk.Add(2 * time.Hour)
	if err := c.Reset(ctx, 2); err != nil {
		t.Fatalf("reset after expiry: %v", err)
	}
	if f.Logins() != 2 {
		t.Errorf("%d logins, want 2 (one re-login after the 401)", f.Logins())
	}
	// The reset ran once: the 401 came before bmcd's handler.
	resets := 0
	for _, r := range f.Requests() {
		if r.Query.Get("type") == "reset" {
			resets++
		}
	}
	if resets != 2 {
		t.Errorf("%d reset requests, want 2 (refused with 401, then sent again)", resets)
	}
}

func TestWrongPasswordNotRetried(t *testing.T) {
	f := newFake(t, bmcfake.Options{})
	c := newClient(t, f, func(o *bmc.Options) { o.Password = "wrong" })
	_, err := c.PowerStatus(t.Context())
	if !errors.Is(err, bmc.ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if !strings.Contains(err.Error(), "bmc turingpi: power status:") || !strings.Contains(err.Error(), "credentials incorrect") {
		t.Errorf("err %q should name the board, the call and bmcd's reason", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("err %q contains the password", err)
	}
	if n := len(f.Requests()); n != 1 {
		t.Errorf("%d requests, want the one login: bmcd bans after repeated failures", n)
	}
}

func TestErrorNamesBoardAndCall(t *testing.T) {
	f := newFake(t, bmcfake.Options{})
	c := newClient(t, f, nil)
	f.Close()
	err := c.Reset(t.Context(), 3)
	if err == nil || !strings.HasPrefix(err.Error(), "bmc turingpi: reset node 3: ") {
		t.Errorf("err = %v, want it to name board and call", err)
	}
}

func TestFingerprint(t *testing.T) {
	f := newFake(t, bmcfake.Options{})
	got, err := bmc.Fingerprint(t.Context(), f.Address(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got != f.Fingerprint() {
		t.Errorf("fingerprint %x, want %x", got, f.Fingerprint())
	}
	if n := len(f.Requests()); n != 0 {
		t.Errorf("fingerprint sent %d HTTP requests, want none", n)
	}
}

// TestPinMismatchRefused: a BMC with another certificate gets no request,
// so neither the password nor a token.
func TestPinMismatchRefused(t *testing.T) {
	f := newFake(t, bmcfake.Options{})
	other := f.Fingerprint()
	other[0] ^= 1
	c := newClient(t, f, func(o *bmc.Options) { o.CertSHA256 = other })
	err := c.Authenticate(t.Context())
	var cm *bmc.CertMismatchError
	if !errors.As(err, &cm) || !errors.Is(err, bmc.ErrCertMismatch) {
		t.Fatalf("err = %v, want a CertMismatchError", err)
	}
	if cm.Got != f.Fingerprint() || cm.Want != other {
		t.Errorf("mismatch names %x and %x, want presented %x and pinned %x", cm.Got, cm.Want, f.Fingerprint(), other)
	}
	if n := len(f.Requests()); n != 0 {
		t.Errorf("%d requests reached the BMC despite the mismatch", n)
	}
}

// TestPinMismatchSendsNothing proves it on the wire: a TLS server with an
// unpinned certificate reads zero bytes of application data from the
// client, whose handshake fails before it sends its Finished message.
func TestPinMismatchSendsNothing(t *testing.T) {
	cert := selfSigned(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		n         int
		handshake error
	}
	got := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			got <- result{handshake: err}
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		tc := conn.(*tls.Conn)
		herr := tc.Handshake()
		var buf bytes.Buffer
		n, _ := buf.ReadFrom(tc)
		got <- result{n: int(n), handshake: herr}
	}()
	var pin [32]byte // anything but the server's
	pin[0] = 1
	c, err := bmc.New(bmc.Options{Board: "turingpi", Address: ln.Addr().String(), User: user, Password: password, CertSHA256: pin, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Authenticate(t.Context())
	if !errors.Is(err, bmc.ErrCertMismatch) {
		t.Fatalf("err = %v, want ErrCertMismatch", err)
	}
	r := <-got
	if r.handshake == nil {
		t.Error("the server completed a handshake the client should have aborted")
	}
	if r.n != 0 {
		t.Errorf("the server read %d bytes of application data, want 0", r.n)
	}
	if want := sha256.Sum256(cert.Certificate[0]); !strings.Contains(err.Error(), hexColon(want)) {
		t.Errorf("err %q should name the presented fingerprint", err)
	}
}

func TestFlash(t *testing.T) {
	f := newFake(t, bmcfake.Options{Power: [4]bool{true, true, true, true}})
	c := newClient(t, f, nil)
	img := bytes.Repeat([]byte("rk1 staging image "), 5000)
	sum := sha256.Sum256(img)
	var last, total int64
	err := c.Flash(t.Context(), 3, bmc.Image{Name: "staging.img", Size: int64(len(img)), SHA256: sum, Body: bytes.NewReader(img)},
		func(w, n int64) { last, total = w, n })
	if err != nil {
		t.Fatal(err)
	}
	got := f.Flashed(3)
	if got == nil || !bytes.Equal(got.Data, img) || got.Name != "staging.img" {
		t.Fatalf("flashed %+v", got)
	}
	if last != int64(len(img)) || total != int64(len(img)) {
		t.Errorf("progress %d/%d, want %d/%d", last, total, len(img), len(img))
	}
	if f.Power(3) {
		t.Error("slot 3 is on after flashing; bmcd leaves it off")
	}
}

func TestFlashHashMismatch(t *testing.T) {
	f := newFake(t, bmcfake.Options{})
	c := newClient(t, f, nil)
	img := []byte("the approved image")
	sum := sha256.Sum256([]byte("a different image"))
	err := c.Flash(t.Context(), 2, bmc.Image{Name: "x.img", Size: int64(len(img)), SHA256: sum, Body: bytes.NewReader(img)}, nil)
	if !errors.Is(err, bmc.ErrFlash) || !strings.Contains(err.Error(), "sha256 checksum failed") {
		t.Fatalf("err = %v, want ErrFlash with bmcd's checksum message", err)
	}
	if f.Flashed(2) != nil {
		t.Error("an image with the wrong hash was written")
	}
}

func TestFlashShortBody(t *testing.T) {
	f := newFake(t, bmcfake.Options{})
	c := newClient(t, f, nil)
	err := c.Flash(t.Context(), 1, bmc.Image{Name: "x.img", Size: 100, Body: strings.NewReader("short")}, nil)
	if !errors.Is(err, bmc.ErrAPI) || !strings.Contains(err.Error(), "missing 95 bytes") {
		t.Fatalf("err = %v, want bmcd's missing-bytes refusal", err)
	}
}

func hexColon(sum [32]byte) string {
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = strings.ToUpper(string("0123456789abcdef"[b>>4]) + string("0123456789abcdef"[b&15]))
	}
	return strings.Join(parts, ":")
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Turing-Pi self signed"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(30*24*3600, 0), // like a board whose clock started at 1970
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestUserMessage(t *testing.T) {
	f := newFake(t, bmcfake.Options{})
	wrongPin := f.Fingerprint()
	wrongPin[5] ^= 1
	cases := []struct {
		name string
		mod  func(*bmc.Options)
		want string
	}{
		{"pin", func(o *bmc.Options) { o.CertSHA256 = wrongPin }, "the BMC turingpi did not present its pinned certificate"},
		{"login", func(o *bmc.Options) { o.Password = "nope" }, "refused nixdeploy's login for reset node 2; check the user in [[bmcs]] and NIXDEPLOY_BMC_PASSWORD_TURINGPI"},
	}
	for _, tc := range cases {
		c := newClient(t, f, tc.mod)
		err := c.Reset(t.Context(), 2)
		var um interface{ UserMessage() string }
		if !errors.As(err, &um) || !strings.Contains(um.UserMessage(), tc.want) {
			t.Errorf("%s: %v, want a user message containing %q", tc.name, err, tc.want)
		}
		if strings.Contains(um.UserMessage(), "nope") {
			t.Errorf("%s: user message %q leaks the password", tc.name, um.UserMessage())
		}
	}
}

// TestReauthenticatesOnce: a BMC that refuses even a fresh token gets one
// new login, not a loop of them (bmcd bans after repeated failures).
func TestReauthenticatesOnce(t *testing.T) {
	clk := &clock{now: time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)}
	f := newFake(t, bmcfake.Options{Now: func() time.Time { clk.Add(time.Hour); return clk.Now() }, TokenTTL: time.Minute})
	c := newClient(t, f, nil)
	_, err := c.PowerStatus(t.Context())
	if !errors.Is(err, bmc.ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
	if f.Logins() != 2 {
		t.Errorf("%d logins, want 2", f.Logins())
	}
}
