// Package bmc is a small client for the Turing Pi 2 board's management
// daemon, bmcd: exactly the calls nixdeploy makes (authenticate, power
// status, on, off and reset of a slot, the serial console buffer, and
// flashing a node's eMMC), over HTTPS pinned to the board's certificate.
//
// Every request and response shape here comes from bmcd's source
// (github.com/turing-machines/bmcd, v2.3.x, the version BMC-Firmware's
// tp2bmc/package/bmcd/bmcd.mk builds) and from the reference client
// (github.com/turing-machines/tpi, src/legacy_handler.rs and
// src/request.rs); the file each rule comes from is named where it is used.
// Where the published API page (docs.turingpi.com, "BMC API") differs from
// the source, the source wins: the page shows responses as
// [{"response": …}], bmcd sends {"response": [{…}]}.
package bmc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// Defaults for Options.
const (
	DefaultTimeout      = 30 * time.Second
	DefaultFlashTimeout = 2 * time.Hour
	DefaultPollInterval = 2 * time.Second
)

// Sentinel errors; an *Error wraps one of them or a transport error.
var (
	// ErrCertMismatch: the BMC presented a certificate other than the
	// pinned one. The handshake was aborted, so nothing was sent.
	ErrCertMismatch = errors.New("certificate does not match the pinned fingerprint")
	// ErrAuth: bmcd refused the user and password (403), or banned this
	// address after too many failures.
	ErrAuth = errors.New("credentials refused")
	// ErrUnauthorized: bmcd answered 401 even to a fresh token.
	ErrUnauthorized = errors.New("request not authorized")
	// ErrSlot: the node is not one of the board's slots 1-4.
	ErrSlot = errors.New("no such slot")
	// ErrAPI: bmcd answered with an error status or an unexpected body.
	ErrAPI = errors.New("bmc api error")
	// ErrFlash: bmcd reported that flashing failed.
	ErrFlash = errors.New("flashing failed")
)

// Error says which board and which call failed.
type Error struct {
	Board string
	Call  string
	Err   error
}

func (e *Error) Error() string { return "bmc " + e.Board + ": " + e.Call + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// CertMismatchError names both fingerprints, like a host-key mismatch.
type CertMismatchError struct {
	Got, Want [32]byte
}

func (e *CertMismatchError) Error() string {
	return fmt.Sprintf("%v: presented %s, pinned %s", ErrCertMismatch, nixdeploy.FormatFingerprint(e.Got), nixdeploy.FormatFingerprint(e.Want))
}
func (e *CertMismatchError) Unwrap() error { return ErrCertMismatch }

// APIError is an error status from bmcd with its message, which bmcd puts
// in {"response":[{"result":"…"}]} (bmcd/src/api/into_legacy_response.rs).
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%v: HTTP %d", ErrAPI, e.Status)
	}
	return fmt.Sprintf("%v: HTTP %d: %s", ErrAPI, e.Status, e.Message)
}
func (e *APIError) Unwrap() error { return ErrAPI }

// Options configure a Client. Board, Address, User and CertSHA256 are
// required.
type Options struct {
	// Board names the board in errors.
	Board string
	// Address is host:port of bmcd's HTTPS API.
	Address  string
	User     string
	Password string
	// CertSHA256 is the pinned SHA-256 of the BMC's leaf certificate.
	CertSHA256 [32]byte
	// Timeout bounds one API call, TLS handshake included (default 30 s);
	// FlashTimeout a whole flash, upload and write (default 2 h).
	Timeout      time.Duration
	FlashTimeout time.Duration
	// PollInterval is the wait between flash progress polls (default 2 s).
	PollInterval time.Duration
}

// Client talks to one board's bmcd. It is safe for concurrent use.
type Client struct {
	o    Options
	http *http.Client

	mu    sync.Mutex
	token string
	// spki is the pinned certificate's SubjectPublicKeyInfo, seen in a
	// handshake that matched the pin (for curl's --pinnedpubkey).
	spki []byte
}

// New returns a client; it connects only when a call is made.
func New(o Options) (*Client, error) {
	if o.Board == "" || o.Address == "" || o.User == "" {
		return nil, errors.New("bmc: board, address and user are required")
	}
	if o.CertSHA256 == ([32]byte{}) {
		return nil, fmt.Errorf("bmc %s: no pinned certificate fingerprint", o.Board)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.FlashTimeout <= 0 {
		o.FlashTimeout = DefaultFlashTimeout
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	c := &Client{o: o}
	c.http = &http.Client{Transport: pinnedTransport(o.CertSHA256, o.Timeout, func(leaf *x509.Certificate) {
		c.mu.Lock()
		c.spki = leaf.RawSubjectPublicKeyInfo
		c.mu.Unlock()
	})}
	return c, nil
}

// pinnedTransport trusts exactly one certificate, by its SHA-256.
//
// bmcd's certificate is self-signed by the board at first boot
// (BMC-Firmware tp2bmc/package/bmcd/generate_self_signedx509.sh: openssl
// req -x509 with no -days, so it expires after 30 days, on a board whose
// clock may start at 1970, and with only a CN, no SAN). Go's chain
// verification would reject it however it was added to RootCAs: expired,
// or not valid for the address. So InsecureSkipVerify turns off only that
// chain check, and VerifyConnection replaces it with a stricter one: the
// leaf must be byte for byte the pinned certificate. VerifyConnection runs
// inside the handshake, before the client's Finished message, so on a
// mismatch the connection is aborted before any HTTP request (and with it
// the password or a token) is written; TestPinMismatchSendsNothing proves
// it on the wire. This is the same trust as a pinned SSH host key: no
// trust on first use, nothing else accepted.
func pinnedTransport(pin [32]byte, timeout time.Duration, matched func(*x509.Certificate)) *http.Transport {
	return &http.Transport{
		// No proxy from the environment: a BMC on the LAN is reached
		// directly, and a proxy would see where the bot connects.
		Proxy: nil,
		TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: true, // replaced by the pin in VerifyConnection
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return &CertMismatchError{Want: pin}
				}
				got := sha256.Sum256(cs.PeerCertificates[0].Raw)
				if got != pin {
					return &CertMismatchError{Got: got, Want: pin}
				}
				if matched != nil {
					matched(cs.PeerCertificates[0])
				}
				return nil
			},
		},
		TLSHandshakeTimeout: timeout,
		// bmcd serves HTTP/1.1 (tpi builds its client with http1_only).
		ForceAttemptHTTP2:   false,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	}
}

// Fingerprint connects to address once and returns the SHA-256 of the leaf
// certificate it presents, for the operator to compare out of band and pin.
// No HTTP request is sent.
func Fingerprint(ctx context.Context, address string, timeout time.Duration) ([32]byte, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	d := tls.Dialer{Config: &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // the point is to read the certificate, not trust it
	}}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return [32]byte{}, fmt.Errorf("connect to %s: %w", address, err)
	}
	defer conn.Close()
	cs := conn.(*tls.Conn).ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return [32]byte{}, fmt.Errorf("%s presented no certificate", address)
	}
	return sha256.Sum256(cs.PeerCertificates[0].Raw), nil
}

// checkNode refuses anything but slots 1-4 before a request is built.
func (c *Client) checkNode(call string, node int) error {
	if node < 1 || node > nixdeploy.BMCSlots {
		return c.fail(call, fmt.Errorf("%w: node %d (the board has slots 1-%d)", ErrSlot, node, nixdeploy.BMCSlots))
	}
	return nil
}

func (c *Client) fail(call string, err error) error {
	return &Error{Board: c.o.Board, Call: call, Err: err}
}

// apiNode is bmcd's node parameter: 0-3 for slots 1-4
// (bmcd/src/api.rs get_node_param, "out of range 0..3"; tpi sends
// args.node - 1).
func apiNode(node int) string { return strconv.Itoa(node - 1) }

// Authenticate logs in and keeps the bearer token. Calls authenticate by
// themselves when they need to; this is for checking credentials early.
func (c *Client) Authenticate(ctx context.Context) error {
	_, err := c.authenticate(ctx)
	if err != nil {
		return c.fail("authenticate", err)
	}
	return nil
}

// authenticate POSTs {"username","password"} to /api/bmc/authenticate
// (bmcd/src/authentication/authentication_context.rs, Login; tpi
// src/request.rs, request_token). bmcd answers 200 with a Session whose
// "id" is the bearer token, or 403 with a text reason. A token expires
// after bmcd's token_expires (default 10800 s, bmcd/default_config.yaml)
// counted from its last use.
//
// A bearer token rather than Basic auth, which bmcd accepts too: the
// password then crosses the wire once per token, not with every call.
// A refused login is never retried: bmcd bans an address after
// authentication_attempts (default 5) failures (ban_patrol.rs).
func (c *Client) authenticate(ctx context.Context) (string, error) {
	body, err := json.Marshal(map[string]string{"username": c.o.User, "password": c.o.Password})
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url("/api/bmc/authenticate", nil), bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return "", transportError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("read login answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusForbidden:
		return "", fmt.Errorf("%w: %s", ErrAuth, oneLine(string(data)))
	default:
		return "", &APIError{Status: resp.StatusCode, Message: oneLine(string(data))}
	}
	var s struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(data, &s); err != nil || s.ID == "" {
		return "", fmt.Errorf("%w: login answer has no session id", ErrAPI)
	}
	c.mu.Lock()
	c.token = s.ID
	c.mu.Unlock()
	return s.ID, nil
}

// tokenFor returns the current token, logging in if there is none.
func (c *Client) tokenFor(ctx context.Context) (string, error) {
	c.mu.Lock()
	t := c.token
	c.mu.Unlock()
	if t != "" {
		return t, nil
	}
	return c.authenticate(ctx)
}

// dropToken forgets t unless another call has replaced it already.
func (c *Client) dropToken(t string) {
	c.mu.Lock()
	if c.token == t {
		c.token = ""
	}
	c.mu.Unlock()
}

func (c *Client) url(path string, q url.Values) string {
	u := url.URL{Scheme: "https", Host: c.o.Address, Path: path}
	if q != nil {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// call sends GET /api/bmc?q with the bearer token and returns the body of
// a 2xx answer. An expired or unknown token gets 401 from bmcd's
// authentication middleware before the handler runs
// (authentication_service.rs, unauthorized_response), so re-sending after
// logging in again cannot repeat an operation; that is done once.
func (c *Client) call(ctx context.Context, q url.Values) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		tok, err := c.tokenFor(ctx)
		if err != nil {
			return nil, err
		}
		status, data, err := c.get(ctx, tok, q)
		if err != nil {
			return nil, err
		}
		if status == http.StatusUnauthorized {
			c.dropToken(tok)
			if attempt == 0 {
				continue
			}
			// Not bmcd's text: for an unknown token it quotes the token.
			return nil, fmt.Errorf("%w: HTTP 401 even after a fresh login", ErrUnauthorized)
		}
		if status < 200 || status > 299 {
			return nil, &APIError{Status: status, Message: resultMessage(data)}
		}
		return data, nil
	}
}

func (c *Client) get(ctx context.Context, tok string, q url.Values) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/api/bmc", q), nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, transportError(err)
	}
	defer resp.Body.Close()
	// The UART buffer is 16 KiB (serial_handler.rs OUTPUT_BUF_SIZE); JSON
	// escaping can at most sextuple it.
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("read answer: %w", err)
	}
	return resp.StatusCode, data, nil
}

// transportError keeps a pin mismatch recognisable through url.Error.
func transportError(err error) error {
	var cm *CertMismatchError
	if errors.As(err, &cm) {
		return cm
	}
	return err
}

// envelope is bmcd's legacy answer, {"response":[{"result": …}]} or, for
// the serial buffer, {"response":[{"uart": "…"}]}
// (bmcd/src/api/into_legacy_response.rs, From<LegacyResponse>).
type envelope struct {
	Response []map[string]json.RawMessage `json:"response"`
}

func field(data []byte, key string) (json.RawMessage, error) {
	var e envelope
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("%w: answer is not JSON: %.80q", ErrAPI, data)
	}
	if len(e.Response) == 0 {
		return nil, fmt.Errorf("%w: answer has an empty response", ErrAPI)
	}
	v, ok := e.Response[0][key]
	if !ok {
		return nil, fmt.Errorf("%w: answer has no %q", ErrAPI, key)
	}
	return v, nil
}

// resultMessage is the "result" string of an error answer, or its text.
func resultMessage(data []byte) string {
	if v, err := field(data, "result"); err == nil {
		var s string
		if json.Unmarshal(v, &s) == nil {
			return oneLine(s)
		}
	}
	return oneLine(string(data))
}

// expectOK checks a set call's {"response":[{"result":"ok"}]}.
func expectOK(data []byte) error {
	v, err := field(data, "result")
	if err != nil {
		return err
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil || s != "ok" {
		return fmt.Errorf("%w: result %s, want \"ok\"", ErrAPI, v)
	}
	return nil
}

// PowerStatus reads every slot's power state: GET opt=get&type=power,
// answered with {"response":[{"result":[{"node1":"1",…,"node4":"0"}]}]},
// each value "1", "0" or "Unknown" (bmcd/src/api/legacy.rs get_node_power;
// tpi print_power_status_nodes). Index 0 is slot 1.
func (c *Client) PowerStatus(ctx context.Context) ([nixdeploy.BMCSlots]nixdeploy.PowerState, error) {
	var out [nixdeploy.BMCSlots]nixdeploy.PowerState
	data, err := c.call(ctx, url.Values{"opt": {"get"}, "type": {"power"}})
	if err != nil {
		return out, c.fail("power status", err)
	}
	v, err := field(data, "result")
	if err != nil {
		return out, c.fail("power status", err)
	}
	var nodes []map[string]string
	if err := json.Unmarshal(v, &nodes); err != nil || len(nodes) == 0 {
		return out, c.fail("power status", fmt.Errorf("%w: result is not [{node1: …}]: %.120s", ErrAPI, v))
	}
	for i := range out {
		switch nodes[0]["node"+strconv.Itoa(i+1)] {
		case "1":
			out[i] = nixdeploy.PowerStateOn
		case "0":
			out[i] = nixdeploy.PowerStateOff
		default:
			// bmcd/src/api/legacy.rs get_node_power_status: "Unknown"
			// when it cannot read the slot.
			out[i] = nixdeploy.PowerStateUnknown
		}
	}
	return out, nil
}

// SetPower turns one slot on or off: GET opt=set&type=power&nodeN=1|0,
// N counted from 1 (bmcd/src/api/legacy.rs set_node_power; tpi
// handle_power_nodes). bmcd silently ignores a nodeN it does not know,
// which is why the slot is checked here first.
func (c *Client) SetPower(ctx context.Context, node int, on bool) error {
	call := "power off"
	bit := "0"
	if on {
		call, bit = "power on", "1"
	}
	if err := c.checkNode(call, node); err != nil {
		return err
	}
	data, err := c.call(ctx, url.Values{"opt": {"set"}, "type": {"power"}, "node" + strconv.Itoa(node): {bit}})
	if err == nil {
		err = expectOK(data)
	}
	if err != nil {
		return c.fail(fmt.Sprintf("%s node %d", call, node), err)
	}
	return nil
}

// Reset power-cycles one slot: GET opt=set&type=reset&node=N-1. bmcd
// switches the slot off, waits a second and switches it on
// (bmcd/src/hal/power_controller.rs reset_node; tpi power reset).
func (c *Client) Reset(ctx context.Context, node int) error {
	if err := c.checkNode("reset", node); err != nil {
		return err
	}
	data, err := c.call(ctx, url.Values{"opt": {"set"}, "type": {"reset"}, "node": {apiNode(node)}})
	if err == nil {
		err = expectOK(data)
	}
	if err != nil {
		return c.fail(fmt.Sprintf("reset node %d", node), err)
	}
	return nil
}

// UART returns the slot's serial console buffer: GET
// opt=get&type=uart&node=N-1, answered with {"response":[{"uart":"…"}]}.
// bmcd keeps the last 16 KiB each node wrote, at 115200 baud, and reading
// does not drain it (bmcd/src/serial_service.rs legacy_serial_get_handler;
// serial_handler.rs read_whole_buffer, OUTPUT_BUF_SIZE).
func (c *Client) UART(ctx context.Context, node int) (string, error) {
	if err := c.checkNode("uart", node); err != nil {
		return "", err
	}
	data, err := c.call(ctx, url.Values{"opt": {"get"}, "type": {"uart"}, "node": {apiNode(node)}})
	if err != nil {
		return "", c.fail(fmt.Sprintf("uart node %d", node), err)
	}
	v, err := field(data, "uart")
	if err != nil {
		return "", c.fail(fmt.Sprintf("uart node %d", node), err)
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", c.fail(fmt.Sprintf("uart node %d", node), fmt.Errorf("%w: uart is not a string", ErrAPI))
	}
	return s, nil
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// UserMessage words the failure as one sentence for chat (the bot's
// UserMessage uses it): which board, which call, what to do. bmcd's own
// reasons are short texts such as "credentials incorrect"; nothing
// secret is in them.
func (e *Error) UserMessage() string {
	board := "the BMC " + e.Board
	var cm *CertMismatchError
	var ae *APIError
	switch {
	case errors.As(e.Err, &cm):
		return fmt.Sprintf("%s did not present its pinned certificate (it showed %s), so nothing was sent to it; compare cert_sha256 with the BMC's own certificate before you change it", board, nixdeploy.FormatFingerprint(cm.Got))
	case errors.Is(e.Err, ErrAuth), errors.Is(e.Err, ErrUnauthorized):
		return fmt.Sprintf("%s refused nixdeploy's login for %s; check the user in [[bmcs]] and %s", board, e.Call, nixdeploy.BMC{Name: e.Board}.PasswordEnv())
	case errors.Is(e.Err, ErrSlot):
		return fmt.Sprintf("%s has slots 1 to %d only; fix bmc_node in the fleet config", board, nixdeploy.BMCSlots)
	case errors.Is(e.Err, ErrFlash):
		return fmt.Sprintf("%s could not %s: %s; the eMMC may be partly written, so flash it again before booting it", board, e.Call, strings.TrimPrefix(e.Err.Error(), ErrFlash.Error()+": "))
	case errors.As(e.Err, &ae):
		return fmt.Sprintf("%s refused %s (HTTP %d: %s)", board, e.Call, ae.Status, ae.Message)
	case errors.Is(e.Err, context.DeadlineExceeded):
		return fmt.Sprintf("%s did not answer %s in time; check that it is up and reachable from nixdeploy", board, e.Call)
	case errors.Is(e.Err, context.Canceled):
		return fmt.Sprintf("%s was cancelled before it finished", e.Call)
	}
	return fmt.Sprintf("nixdeploy could not reach %s for %s; check that it is up and reachable from nixdeploy", board, e.Call)
}
