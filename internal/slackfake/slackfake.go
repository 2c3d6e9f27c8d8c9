// Package slackfake is a fake Slack Web API for tests and demos: an
// httptest server that a slack-go client reaches through
// slack.OptionAPIURL(srv.APIURL()). It answers the methods nixdeploy uses the
// way Slack does (realistic ts values, ok/error envelopes, 429 with
// Retry-After on request, the three-step file upload, Socket Mode), records
// every call, and keeps the messages and files it was sent so a test can read
// what a user would see. The sign* helpers in send.go drive a bot's HTTP
// endpoints with correctly signed requests.
package slackfake

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Identities the fake reports from auth.test.
const (
	BotUserID = "U0NIXBOT01"
	BotID     = "B0NIXBOT01"
	TeamID    = "T0FAKE0001"
)

// baseTS is the seconds part of every ts the fake hands out; the
// microsecond part counts up from 100, so ts values sort like Slack's.
const baseTS = 1732662000

// Call is one recorded request to a Web API method (or to the upload URL,
// recorded as method "upload").
type Call struct {
	Method string
	// Params holds the form parameters, or the top-level fields of a JSON
	// body rendered as strings. The token is not kept here.
	Params url.Values
	// Token is the credential the call carried (form field or bearer).
	Token string
	// Status is the HTTP status the fake answered with.
	Status int
	// Error is the Slack error code when the answer was ok=false.
	Error string
}

// Message is a message the fake holds, as it currently reads.
type Message struct {
	Channel  string
	TS       string
	ThreadTS string
	Text     string
	// Blocks is the raw JSON of the blocks, or empty.
	Blocks string
	// Ephemeral messages are visible only to User.
	Ephemeral bool
	User      string
	// Versions holds the rendered text after the post and after every
	// update, oldest first.
	Versions  []string
	Reactions []string
}

// Rendered is the text a reader sees: the top-level text followed by every
// text field of the blocks.
func (m Message) Rendered() string { return render(m.Text, m.Blocks) }

// File is a file shared through files.completeUploadExternal.
type File struct {
	ID       string
	Name     string
	Title    string
	Channel  string
	ThreadTS string
	// Length is what files.getUploadURLExternal was told.
	Length  int
	Content []byte
}

type rateLimit struct {
	n          int
	retryAfter int
}

type upload struct {
	name    string
	length  int
	content []byte
	done    bool
}

// Server is the fake. Its zero value is not usable; call New.
type Server struct {
	srv *httptest.Server
	// Token, when set, is the only bot token accepted; others get
	// invalid_auth, as from Slack.
	token    string
	appToken string

	mu       sync.Mutex
	seq      int
	calls    []Call
	messages []*Message
	files    []File
	uploads  map[string]*upload
	limits   map[string]*rateLimit
	changed  chan struct{}

	socket *socketHub
}

// Options configure a Server.
type Options struct {
	// BotToken, when set, is the only accepted bot token.
	BotToken string
	// AppToken, when set, is the only accepted app-level token for
	// apps.connections.open.
	AppToken string
}

// New starts a fake. Close it when done (tests: t.Cleanup(s.Close)).
func New(o Options) *Server {
	s := &Server{
		token:    o.BotToken,
		appToken: o.AppToken,
		uploads:  map[string]*upload{},
		limits:   map[string]*rateLimit{},
		changed:  make(chan struct{}),
	}
	s.socket = newSocketHub(s)
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Close shuts the server down.
func (s *Server) Close() {
	s.socket.close()
	s.srv.Close()
}

// URL is the server's base URL.
func (s *Server) URL() string { return s.srv.URL }

// APIURL is the value for slack.OptionAPIURL.
func (s *Server) APIURL() string { return s.srv.URL + "/" }

// RateLimit makes the next n calls of method answer 429 with Retry-After
// set to retryAfter (whole seconds, as Slack sends it).
func (s *Server) RateLimit(method string, n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits[method] = &rateLimit{n: n, retryAfter: int(retryAfter / time.Second)}
}

// Calls returns the recorded calls of the given methods, or of every
// method when none are named, in arrival order.
func (s *Server) Calls(methods ...string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if len(methods) == 0 || slices.Contains(methods, c.Method) {
			c.Params = cloneValues(c.Params)
			out = append(out, c)
		}
	}
	return out
}

// Messages returns copies of every message, in the order they were posted.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.messages))
	for i, m := range s.messages {
		out[i] = copyMessage(m)
	}
	return out
}

// Message returns the message at channel and ts.
func (s *Server) Message(channel, ts string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.find(channel, ts); m != nil {
		return copyMessage(m), true
	}
	return Message{}, false
}

// Files returns the shared files, in completion order.
func (s *Server) Files() []File {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]File, len(s.files))
	for i, f := range s.files {
		f.Content = slices.Clone(f.Content)
		out[i] = f
	}
	return out
}

// Changed returns a channel closed at the next recorded call, so a test can
// wait for the fake to be called without sleeping.
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func copyMessage(m *Message) Message {
	c := *m
	c.Versions = slices.Clone(m.Versions)
	c.Reactions = slices.Clone(m.Reactions)
	return c
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

func (s *Server) find(channel, ts string) *Message {
	for _, m := range s.messages {
		if m.Channel == channel && m.TS == ts {
			return m
		}
	}
	return nil
}

// nextTS must be called with s.mu held.
func (s *Server) nextTS() string {
	s.seq++
	return fmt.Sprintf("%d.%06d", baseTS, 100+s.seq)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/socket":
		s.socket.serve(w, r)
		return
	case strings.HasPrefix(r.URL.Path, "/upload/"):
		s.serveUpload(w, r)
		return
	}
	method := strings.TrimPrefix(r.URL.Path, "/")
	params, token, err := readParams(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	call := Call{Method: method, Params: params, Token: token, Status: http.StatusOK}
	defer func() {
		s.calls = append(s.calls, call)
		close(s.changed)
		s.changed = make(chan struct{})
	}()
	if l := s.limits[method]; l != nil && l.n > 0 {
		l.n--
		call.Status = http.StatusTooManyRequests
		w.Header().Set("Retry-After", strconv.Itoa(l.retryAfter))
		http.Error(w, "rate limited", http.StatusTooManyRequests)
		return
	}
	resp, code := s.dispatch(method, params, token)
	if code != "" {
		call.Error = code
		resp = map[string]any{"ok": false, "error": code}
	} else {
		resp["ok"] = true
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(resp)
}

// readParams reads a form or JSON body; the token comes from the form or
// the Authorization header.
func readParams(r *http.Request) (url.Values, string, error) {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	params := url.Values{}
	switch ct {
	case "application/json":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, "", err
		}
		if len(body) > 0 {
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				return nil, "", fmt.Errorf("bad json body: %w", err)
			}
			for k, v := range m {
				if str, ok := v.(string); ok {
					params.Set(k, str)
				} else {
					b, _ := json.Marshal(v)
					params.Set(k, string(b))
				}
			}
		}
	default:
		if err := r.ParseForm(); err != nil {
			return nil, "", err
		}
		params = cloneValues(r.Form)
	}
	if t := params.Get("token"); t != "" {
		token = t
	}
	params.Del("token")
	return params, token, nil
}

// dispatch answers one method. It returns the response fields, or a Slack
// error code. It runs with s.mu held.
func (s *Server) dispatch(method string, p url.Values, token string) (map[string]any, string) {
	if method == "apps.connections.open" {
		if s.appToken != "" && token != s.appToken {
			return nil, "invalid_auth"
		}
		return map[string]any{"url": "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/socket"}, ""
	}
	if token == "" {
		return nil, "not_authed"
	}
	if s.token != "" && token != s.token {
		return nil, "invalid_auth"
	}
	switch method {
	case "auth.test":
		return map[string]any{"url": "https://fake.slack.com/", "team": "Fake", "user": "nixdeploy",
			"team_id": TeamID, "user_id": BotUserID, "bot_id": BotID}, ""
	case "chat.postMessage":
		ch := p.Get("channel")
		if ch == "" {
			return nil, "channel_not_found"
		}
		if p.Get("text") == "" && p.Get("blocks") == "" {
			return nil, "no_text"
		}
		m := &Message{Channel: ch, TS: s.nextTS(), ThreadTS: p.Get("thread_ts"), Text: p.Get("text"), Blocks: p.Get("blocks"), User: BotUserID}
		m.Versions = []string{m.Rendered()}
		s.messages = append(s.messages, m)
		return map[string]any{"channel": ch, "ts": m.TS, "message": map[string]any{
			"type": "message", "text": m.Text, "ts": m.TS, "user": BotUserID, "bot_id": BotID}}, ""
	case "chat.update":
		m := s.find(p.Get("channel"), p.Get("ts"))
		if m == nil {
			return nil, "message_not_found"
		}
		if p.Has("text") {
			m.Text = p.Get("text")
		}
		if p.Has("blocks") {
			m.Blocks = p.Get("blocks")
		}
		m.Versions = append(m.Versions, m.Rendered())
		return map[string]any{"channel": m.Channel, "ts": m.TS, "text": m.Text}, ""
	case "chat.postEphemeral":
		ch, user := p.Get("channel"), p.Get("user")
		if ch == "" {
			return nil, "channel_not_found"
		}
		if user == "" {
			return nil, "user_not_in_channel"
		}
		m := &Message{Channel: ch, TS: s.nextTS(), Text: p.Get("text"), Blocks: p.Get("blocks"), Ephemeral: true, User: user}
		m.Versions = []string{m.Rendered()}
		s.messages = append(s.messages, m)
		return map[string]any{"message_ts": m.TS}, ""
	case "reactions.add":
		m := s.find(p.Get("channel"), p.Get("timestamp"))
		if m == nil {
			return nil, "message_not_found"
		}
		if slices.Contains(m.Reactions, p.Get("name")) {
			return nil, "already_reacted"
		}
		m.Reactions = append(m.Reactions, p.Get("name"))
		return map[string]any{}, ""
	case "conversations.info":
		ch := p.Get("channel")
		if ch == "" {
			return nil, "channel_not_found"
		}
		return map[string]any{"channel": map[string]any{"id": ch, "name": "fleet", "is_channel": true, "is_member": true}}, ""
	case "files.getUploadURLExternal":
		n, err := strconv.Atoi(p.Get("length"))
		if p.Get("filename") == "" || err != nil || n <= 0 {
			return nil, "invalid_arguments"
		}
		s.seq++
		id := fmt.Sprintf("F0FAKE%04d", s.seq)
		s.uploads[id] = &upload{name: p.Get("filename"), length: n}
		return map[string]any{"upload_url": s.srv.URL + "/upload/" + id, "file_id": id}, ""
	case "files.completeUploadExternal":
		var fs []struct {
			ID    string `json:"id"`
			Title string `json:"title"`
		}
		if err := json.Unmarshal([]byte(p.Get("files")), &fs); err != nil || len(fs) == 0 {
			return nil, "invalid_arguments"
		}
		var out []map[string]any
		for _, f := range fs {
			u := s.uploads[f.ID]
			if u == nil || u.content == nil {
				return nil, "file_not_found"
			}
			if u.done {
				return nil, "file_already_completed"
			}
			u.done = true
			s.files = append(s.files, File{ID: f.ID, Name: u.name, Title: f.Title, Channel: p.Get("channel_id"),
				ThreadTS: p.Get("thread_ts"), Length: u.length, Content: u.content})
			out = append(out, map[string]any{"id": f.ID, "title": f.Title})
		}
		return map[string]any{"files": out}, ""
	}
	return nil, "unknown_method"
}

// serveUpload accepts the multipart POST to an upload URL.
func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/upload/")
	var content []byte
	status := http.StatusOK
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil {
		mr := multipart.NewReader(r.Body, params["boundary"])
		for {
			part, perr := mr.NextPart()
			if perr != nil {
				if perr != io.EOF {
					err = perr
				}
				break
			}
			if part.FormName() == "file" {
				content, err = io.ReadAll(part)
			}
			part.Close()
		}
	}
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.uploads[id]
	switch {
	case err != nil || content == nil:
		status = http.StatusBadRequest
	case u == nil:
		status = http.StatusNotFound
	default:
		u.content = content
	}
	s.calls = append(s.calls, Call{Method: "upload", Params: url.Values{"file_id": {id}, "bytes": {strconv.Itoa(len(content))}},
		Token: token, Status: status})
	close(s.changed)
	s.changed = make(chan struct{})
	if status != http.StatusOK {
		http.Error(w, "upload failed", status)
		return
	}
	fmt.Fprintf(w, "OK - %d", len(content))
}

// render joins text with the text fields found anywhere in blocks JSON.
func render(text, blocks string) string {
	parts := []string{}
	if text != "" {
		parts = append(parts, text)
	}
	if blocks != "" {
		var v any
		if json.Unmarshal([]byte(blocks), &v) == nil {
			collectText(v, &parts)
		}
	}
	return strings.Join(parts, "\n")
}

func collectText(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		if t, ok := x["text"].(string); ok {
			*out = append(*out, t)
		}
		// Sorted keys keep the rendering stable across runs.
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if _, isString := x[k].(string); k != "text" || !isString {
				collectText(x[k], out)
			}
		}
	case []any:
		for _, e := range x {
			collectText(e, out)
		}
	}
}
