// Package bmcfake is a Turing Pi 2 BMC daemon (bmcd) for tests: an HTTPS
// server on loopback with bmcd's authentication, its legacy API for power,
// reset, the serial buffer and flashing, and its answers byte for byte in
// shape. Its rules come from bmcd's source (github.com/turing-machines/
// bmcd, bmcd/src/…), cited where each is enforced, never from nixdeploy's
// client.
//
// One deliberate difference: bmcd lets requests from its own loopback
// interface through without authentication (authentication_service.rs,
// "drop authentication for requests on loopback interface"). The fake
// listens on loopback but demands authentication of every request, since
// nixdeploy never runs on the BMC itself.
package bmcfake

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of bmcd (bmcd/default_config.yaml, authentication).
const (
	DefaultTokenTTL    = 10800 * time.Second
	DefaultMaxAttempts = 5
	// UARTBuffer is bmcd's per-node serial ring buffer
	// (serial_service/serial_handler.rs, OUTPUT_BUF_SIZE = 16 * 1024).
	UARTBuffer = 16 * 1024
	// Slots is the number of node slots.
	Slots = 4
)

// Options configure a fake BMC. User and Password are the only login.
type Options struct {
	User, Password string
	// TokenTTL is bmcd's token_expires, counted from a token's last use.
	TokenTTL time.Duration
	// MaxAttempts is bmcd's authentication_attempts before a ban.
	MaxAttempts int
	// Now is the clock tokens expire by; default time.Now.
	Now func() time.Time
	// OnReset, if set, runs after slot node (1-4) was reset, before the
	// answer is sent: a test brings the node back there (starts its
	// sshd), or leaves it down.
	OnReset func(node int)
	// OnPower, if set, runs after slot node was switched on or off.
	OnPower func(node int, on bool)
	// OnUART, if set, runs before slot node's serial buffer is read.
	OnUART func(node int)
	// Power is the initial state of slots 1-4.
	Power [Slots]bool
}

// Request is one request the fake received, as a test asserts on it.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	// Auth is the Authorization scheme sent: "Bearer", "Basic" or "".
	Auth string
}

// Image is what was flashed to a slot.
type Image struct {
	Name   string
	Data   []byte
	SHA256 [32]byte
}

// BMC is a running fake.
type BMC struct {
	o   Options
	srv *httptest.Server

	mu       sync.Mutex
	tokens   map[string]time.Time // token → last use
	failures int
	power    [Slots]bool
	uart     [Slots][]byte
	requests []Request
	logins   int
	flash    *transfer
	images   [Slots]*Image
}

// transfer is bmcd's StreamingState (streaming_data_service.rs).
type transfer struct {
	id       uint32
	node     int
	name     string
	size     int64
	sha      []byte
	written  int64
	uploaded bool
	polls    int
	err      string
}

// New starts a fake BMC with its own self-signed certificate.
func New(o Options) *BMC {
	if o.TokenTTL <= 0 {
		o.TokenTTL = DefaultTokenTTL
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	f := &BMC{o: o, tokens: map[string]time.Time{}, power: o.Power}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	return f
}

// Close stops the server.
func (f *BMC) Close() { f.srv.Close() }

// Address is host:port of the fake, on 127.0.0.1.
func (f *BMC) Address() string { return strings.TrimPrefix(f.srv.URL, "https://") }

// Fingerprint is the SHA-256 of the fake's certificate, to pin.
func (f *BMC) Fingerprint() [32]byte { return sha256.Sum256(f.srv.Certificate().Raw) }

// Requests returns every request received so far.
func (f *BMC) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.requests...)
}

// Logins counts successful authentications.
func (f *BMC) Logins() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logins
}

// Power reports whether slot node (1-4) is on.
func (f *BMC) Power(node int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.power[node-1]
}

// WriteUART appends what slot node printed on its serial console; the
// buffer keeps the last UARTBuffer bytes, like bmcd's ring buffer.
func (f *BMC) WriteUART(node int, s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := append(f.uart[node-1], s...)
	if len(b) > UARTBuffer {
		b = b[len(b)-UARTBuffer:]
	}
	f.uart[node-1] = b
}

// Flashed returns what was last flashed to slot node, or nil.
func (f *BMC) Flashed(node int) *Image {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.images[node-1]
}

func (f *BMC) serve(w http.ResponseWriter, r *http.Request) {
	scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	f.mu.Lock()
	f.requests = append(f.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Auth: scheme})
	f.mu.Unlock()
	if !strings.HasPrefix(r.URL.Path, "/api/bmc") {
		http.NotFound(w, r)
		return
	}
	// authentication_service.rs: the login path is answered by the
	// middleware itself; everything else under /api/bmc needs a valid
	// Authorization header first.
	if r.URL.Path == "/api/bmc/authenticate" {
		f.authenticate(w, r)
		return
	}
	if !f.authorize(w, r) {
		return
	}
	switch {
	case r.URL.Path == "/api/bmc" && r.Method == http.MethodGet:
		f.api(w, r)
	case strings.HasPrefix(r.URL.Path, "/api/bmc/upload/") && r.Method == http.MethodPost:
		f.upload(w, r)
	default:
		http.NotFound(w, r)
	}
}

// authenticate is authentication_context.rs authenticate_request: a JSON
// Login, 403 with the reason as text on failure, 200 with the Session and
// an X-Auth-Token header on success (authenticated_response).
func (f *BMC) authenticate(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		// bmcd reads the body of any method; tpi and the web UI POST.
		// Stricter here: only a POST carries credentials.
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var login struct {
		Username *string `json:"username"`
		Password *string `json:"password"`
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failures >= f.o.MaxAttempts {
		forbidden(w, "Exceeded allowed authentication attempts. Access blocked for 1m")
		return
	}
	if err := json.Unmarshal(body, &login); err != nil || login.Username == nil || login.Password == nil {
		forbidden(w, "error trying to parse credentials: missing field")
		return
	}
	if *login.Username != f.o.User || *login.Password != f.o.Password {
		f.failures++
		forbidden(w, "credentials incorrect")
		return
	}
	f.failures = 0
	tok := newToken()
	f.tokens[tok] = f.o.Now()
	f.logins++
	w.Header().Set("X-Auth-Token", tok)
	_ = json.NewEncoder(w).Encode(map[string]string{
		"id": tok, "name": "User Session", "description": "User Session", "username": *login.Username,
	})
}

func forbidden(w http.ResponseWriter, msg string) {
	w.WriteHeader(http.StatusForbidden)
	_, _ = io.WriteString(w, msg)
}

// authorize is authentication_context.rs authorize_request: Bearer tokens
// expire a TokenTTL after their last use and are then forgotten; Basic
// carries the credentials. Failures are 401 with a WWW-Authenticate
// challenge and the reason as text (unauthorized_response).
func (f *BMC) authorize(w http.ResponseWriter, r *http.Request) bool {
	const realm = "Access to Baseboard Management Controller"
	h := r.Header.Get("Authorization")
	f.mu.Lock()
	defer f.mu.Unlock()
	deny := func(challenge, msg string) bool {
		w.Header().Set("WWW-Authenticate", challenge)
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, msg)
		return false
	}
	scheme, cred, ok := strings.Cut(h, " ")
	switch {
	case h == "":
		return deny(`Basic realm="`+realm+`"`, "no authorization header provided")
	case ok && scheme == "Bearer":
		last, known := f.tokens[cred]
		if !known {
			f.failures++
			return deny(`Bearer realm="`+realm+`" error="invalid_token"`, "token "+cred+" is not registered")
		}
		now := f.o.Now()
		if now.Sub(last) >= f.o.TokenTTL {
			delete(f.tokens, cred)
			return deny(`Bearer realm="`+realm+`" error="invalid_token"`, "token expired "+now.Sub(last).String()+" ago")
		}
		f.tokens[cred] = now
		return true
	case ok && scheme == "Basic":
		raw, err := base64.StdEncoding.DecodeString(cred)
		u, p, found := strings.Cut(string(raw), ":")
		if err != nil || !found || u != f.o.User || p != f.o.Password {
			f.failures++
			return deny(`Basic realm="`+realm+`"`, "credentials incorrect")
		}
		return true
	case ok:
		return deny(`realm="`+realm+`"`, scheme+" authentication not supported")
	}
	return deny(`Basic realm="`+realm+`"`, "cannot parse authorization header: "+h)
}

// legacy writes bmcd's envelope {"response":[{key: value}]}
// (api/into_legacy_response.rs, From<LegacyResponse> for HttpResponse).
func legacy(w http.ResponseWriter, status int, key string, value any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"response": []map[string]any{{key: value}}})
}

func badRequest(w http.ResponseWriter, msg string) { legacy(w, http.StatusBadRequest, "result", msg) }

// api is legacy.rs api_entry and the flash guards in front of it.
func (f *BMC) api(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	raw := r.URL.RawQuery
	// legacy.rs flash_status_guard and flash_guard match the raw query.
	if strings.Contains(raw, "type=flash") && strings.Contains(raw, "opt=get") {
		f.flashStatus(w)
		return
	}
	if strings.Contains(raw, "type=flash") && strings.Contains(raw, "opt=set") {
		f.flashRequest(w, q)
		return
	}
	var set bool
	switch q.Get("opt") {
	case "set":
		set = true
	case "get":
	default:
		badRequest(w, "Missing `opt` parameter")
		return
	}
	ty, ok := q["type"]
	if !ok {
		badRequest(w, "Missing `type` parameter")
		return
	}
	switch {
	case ty[0] == "power" && !set:
		f.mu.Lock()
		st := map[string]string{}
		for i, on := range f.power {
			st["node"+strconv.Itoa(i+1)] = map[bool]string{true: "1", false: "0"}[on]
		}
		f.mu.Unlock()
		legacy(w, http.StatusOK, "result", []map[string]string{st})
	case ty[0] == "power" && set:
		f.setPower(w, q)
	case ty[0] == "reset" && set:
		node, ok := nodeParam(w, q)
		if !ok {
			return
		}
		f.mu.Lock()
		f.power[node-1] = true
		f.mu.Unlock()
		if f.o.OnReset != nil {
			f.o.OnReset(node)
		}
		legacy(w, http.StatusOK, "result", "ok")
	case ty[0] == "uart" && !set:
		node, ok := nodeParam(w, q)
		if !ok {
			return
		}
		if f.o.OnUART != nil {
			f.o.OnUART(node)
		}
		f.mu.Lock()
		s := strings.ToValidUTF8(string(f.uart[node-1]), "\uFFFD")
		f.mu.Unlock()
		legacy(w, http.StatusOK, "uart", s)
	default:
		badRequest(w, "Invalid `type` parameter "+ty[0])
	}
}

// setPower is legacy.rs set_node_power: node1..node4, each "0" or "1";
// other parameters are ignored, a bad value is refused.
func (f *BMC) setPower(w http.ResponseWriter, q url.Values) {
	type change struct {
		node int
		on   bool
	}
	var changes []change
	for i := 1; i <= Slots; i++ {
		p := "node" + strconv.Itoa(i)
		v, ok := q[p]
		if !ok {
			continue
		}
		switch v[0] {
		case "0", "1":
			changes = append(changes, change{i, v[0] == "1"})
		default:
			badRequest(w, fmt.Sprintf("Invalid value `%s` for parameter `%s`", v[0], p))
			return
		}
	}
	f.mu.Lock()
	for _, c := range changes {
		f.power[c.node-1] = c.on
	}
	f.mu.Unlock()
	if f.o.OnPower != nil {
		for _, c := range changes {
			f.o.OnPower(c.node, c.on)
		}
	}
	legacy(w, http.StatusOK, "result", "ok")
}

// nodeParam is api.rs get_node_param: node is 0-3, for slots 1-4. It
// returns the slot, counted from 1.
func nodeParam(w http.ResponseWriter, q url.Values) (int, bool) {
	v, ok := q["node"]
	if !ok {
		badRequest(w, "Missing `node` parameter")
		return 0, false
	}
	n, err := strconv.ParseInt(v[0], 10, 32)
	if err != nil {
		badRequest(w, "Parameter `node` is not a number")
		return 0, false
	}
	// bmcd casts the i32 to u8 before matching 0-3.
	if uint8(n) > 3 {
		badRequest(w, "Parameter `node` is out of range 0..3 of node IDs")
		return 0, false
	}
	return int(uint8(n)) + 1, true
}

// flashRequest is legacy.rs handle_transfer_request and
// create_data_transfer for an upload: file, length and an optional
// sha256; the answer is the bare {"handle":H}.
func (f *BMC) flashRequest(w http.ResponseWriter, q url.Values) {
	node, ok := nodeParam(w, q)
	if !ok {
		return
	}
	file := q.Get("file")
	if _, ok := q["file"]; !ok {
		badRequest(w, "Invalid `file` query parameter")
		return
	}
	if _, ok := q["local"]; ok || strings.HasPrefix(file, "http") {
		// Real bmcd also flashes a file on its SD card or a URL it
		// downloads; nixdeploy uploads, and the fake only does that.
		legacy(w, http.StatusNotImplemented, "result", "the fake BMC only accepts uploads")
		return
	}
	var sha []byte
	if s, ok := q["sha256"]; ok {
		b, err := hex.DecodeString(s[0])
		if err != nil {
			badRequest(w, "`sha256` parameter contains invalid hex values: "+err.Error())
			return
		}
		sha = b
	}
	ls, ok := q["length"]
	if !ok {
		legacy(w, http.StatusLengthRequired, "result", "Invalid `length` query parameter")
		return
	}
	size, err := strconv.ParseUint(ls[0], 10, 64)
	if err != nil {
		badRequest(w, "`length` parameter is not a number")
		return
	}
	var id [4]byte
	_, _ = rand.Read(id[:])
	t := &transfer{id: uint32(id[0])<<24 | uint32(id[1])<<16 | uint32(id[2])<<8 | uint32(id[3]), node: node, name: file, size: int64(size), sha: sha}
	f.mu.Lock()
	// request_transfer cancels whatever ran before.
	f.flash = t
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, `{"handle":%d}`, t.id)
}

// upload is legacy.rs handle_file_upload: the handle must be the current
// transfer's, the first multipart field is the data, and fewer bytes than
// announced is an error. The sha256 is checked over the stream
// (utils/io.rs Sha256StreamValidator) and fails the transfer.
func (f *BMC) upload(w http.ResponseWriter, r *http.Request) {
	h, err := strconv.ParseUint(strings.TrimPrefix(r.URL.Path, "/api/bmc/upload/"), 10, 32)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	t := f.flash
	f.mu.Unlock()
	if t == nil || t.id != uint32(h) || t.uploaded {
		badRequest(w, "handles do not match")
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		badRequest(w, "Multipart form invalid")
		return
	}
	part, err := mr.NextPart()
	if err != nil {
		badRequest(w, "Multipart form invalid")
		return
	}
	data, err := io.ReadAll(io.LimitReader(part, t.size+1))
	if err != nil {
		badRequest(w, "Multipart form invalid")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t.uploaded = true
	if int64(len(data)) < t.size {
		f.flash = &transfer{err: "cancelled by user"}
		badRequest(w, fmt.Sprintf("missing %d bytes", t.size-int64(len(data))))
		return
	}
	sum := sha256.Sum256(data[:t.size])
	if t.sha != nil && hex.EncodeToString(sum[:]) != hex.EncodeToString(t.sha) {
		t.err = fmt.Sprintf("sha256 checksum failed. Expected: %x, got: %x", t.sha, sum)
		w.WriteHeader(http.StatusOK)
		return
	}
	t.written = t.size
	// The node is held off while its eMMC is written
	// (bmc_application.rs node_in_flash reboots it into USB mode).
	f.power[t.node-1] = false
	f.images[t.node-1] = &Image{Name: t.name, Data: data[:t.size], SHA256: sum}
	w.WriteHeader(http.StatusOK)
}

// flashStatus is legacy.rs handle_flash_status: the serde form of
// StreamingState, without the envelope. The first poll after an upload
// still says Transferring (bmcd verifies the CRC after writing).
func (f *BMC) flashStatus(w http.ResponseWriter) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	t := f.flash
	switch {
	case t == nil:
		_, _ = io.WriteString(w, `"Ready"`)
	case t.err != "":
		b, _ := json.Marshal(map[string]string{"Error": t.err})
		_, _ = w.Write(b)
	case t.uploaded && t.polls > 0:
		fmt.Fprintf(w, `{"Done":[{"secs":1,"nanos":0},%d]}`, t.size)
	default:
		if t.uploaded {
			t.polls++
		}
		fmt.Fprintf(w, `{"Transferring":{"id":%d,"process_name":"Node %d os install service","size":%d,"cancelled":false,"bytes_written":%d}}`,
			t.id, t.node, t.size, t.written)
	}
}

func newToken() string {
	// bmcd: 64 random alphanumerics.
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	var b [64]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	return string(b[:])
}
