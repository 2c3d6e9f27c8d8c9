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
	"math"
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
	// update, oldest first; Times when each arrived.
	Versions  []string
	Times     []time.Time
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
	members  map[string][]string
	perMin   map[string]int
	recent   map[string][]time.Time
	// responses are the response_urls handed out, by their id.
	responses map[string]*responseURL

	socket *socketHub
}

// Options configure a Server.
type Options struct {
	// BotToken, when set, is the only accepted bot token.
	BotToken string
	// AppToken, when set, is the only accepted app-level token for
	// apps.connections.open.
	AppToken string
	// Members, when set, are the channels that exist and who is in each
	// (user ids; BotUserID for the bot). chat.postMessage and
	// chat.postEphemeral then answer as Slack does outside them: an
	// unknown channel, a private one (G…) or a DM (D…) the bot is not in
	// is channel_not_found, a public one (C…) it is not in is
	// not_in_channel, and an ephemeral for a user who is not in the
	// channel is user_not_in_channel (Slack's chat.postEphemeral and
	// chat.postMessage error lists, as in slack-ruby/slack-api-ref
	// methods/chat/*.json). When nil, the bot is in every channel but DMs
	// (D…), which are between people.
	Members map[string][]string
	// PerMinute, when set, are Slack's rate limits to enforce: calls of
	// a method within any 60 s beyond its number get a 429 with
	// Retry-After, as from Slack (Tier 3 is about 50 a minute).
	PerMinute map[string]int
}

// New starts a fake. Close it when done (tests: t.Cleanup(s.Close)).
func New(o Options) *Server {
	s := &Server{
		token:     o.BotToken,
		appToken:  o.AppToken,
		uploads:   map[string]*upload{},
		limits:    map[string]*rateLimit{},
		changed:   make(chan struct{}),
		members:   o.Members,
		perMin:    o.PerMinute,
		recent:    map[string][]time.Time{},
		responses: map[string]*responseURL{},
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
	c.Times = slices.Clone(m.Times)
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
	case strings.HasPrefix(r.URL.Path, "/response/"):
		s.serveResponse(w, r)
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
	if n := s.perMin[method]; n > 0 {
		now := time.Now()
		win := s.recent[method]
		for len(win) > 0 && now.Sub(win[0]) >= time.Minute {
			win = win[1:]
		}
		s.recent[method] = win
		if len(win) >= n {
			call.Status = http.StatusTooManyRequests
			retry := int(math.Ceil((time.Minute - now.Sub(win[0])).Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(max(retry, 1)))
			http.Error(w, "rate limited", http.StatusTooManyRequests)
			return
		}
		s.recent[method] = append(win, now)
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
		if code := s.canPost(ch, ""); code != "" {
			return nil, code
		}
		if p.Get("text") == "" && p.Get("blocks") == "" {
			return nil, "no_text"
		}
		if code := checkBlocks(p.Get("blocks")); code != "" {
			return nil, code
		}
		m := &Message{Channel: ch, TS: s.nextTS(), ThreadTS: p.Get("thread_ts"), Text: p.Get("text"), Blocks: p.Get("blocks"), User: BotUserID}
		m.Versions, m.Times = []string{m.Rendered()}, []time.Time{time.Now()}
		s.messages = append(s.messages, m)
		return map[string]any{"channel": ch, "ts": m.TS, "message": map[string]any{
			"type": "message", "text": m.Text, "ts": m.TS, "user": BotUserID, "bot_id": BotID}}, ""
	case "chat.update":
		m := s.find(p.Get("channel"), p.Get("ts"))
		if m == nil {
			return nil, "message_not_found"
		}
		if code := checkBlocks(p.Get("blocks")); code != "" {
			return nil, code
		}
		if p.Has("text") {
			m.Text = p.Get("text")
		}
		if p.Has("blocks") {
			m.Blocks = p.Get("blocks")
		}
		m.Versions, m.Times = append(m.Versions, m.Rendered()), append(m.Times, time.Now())
		return map[string]any{"channel": m.Channel, "ts": m.TS, "text": m.Text}, ""
	case "chat.postEphemeral":
		ch, user := p.Get("channel"), p.Get("user")
		if user == "" {
			return nil, "user_not_in_channel"
		}
		if code := s.canPost(ch, user); code != "" {
			return nil, code
		}
		if code := checkBlocks(p.Get("blocks")); code != "" {
			return nil, code
		}
		m := &Message{Channel: ch, TS: s.nextTS(), Text: p.Get("text"), Blocks: p.Get("blocks"), Ephemeral: true, User: user}
		m.Versions, m.Times = []string{m.Rendered()}, []time.Time{time.Now()}
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

// canPost is the Slack error code for the bot posting into ch (for user,
// when an ephemeral), or "". It runs with s.mu held.
func (s *Server) canPost(ch, user string) string {
	if ch == "" {
		return "channel_not_found"
	}
	if s.members == nil {
		if strings.HasPrefix(ch, "D") {
			return "channel_not_found"
		}
		return ""
	}
	members, ok := s.members[ch]
	switch {
	case !ok:
		return "channel_not_found"
	case !slices.Contains(members, BotUserID) && strings.HasPrefix(ch, "C"):
		return "not_in_channel"
	case !slices.Contains(members, BotUserID):
		return "channel_not_found"
	case user != "" && !slices.Contains(members, user):
		return "user_not_in_channel"
	}
	return ""
}

// responseURL is a slash command's response_url: Slack lets an app answer
// through it up to five times within 30 minutes, whether or not the bot
// is in the channel.
type responseURL struct {
	channel, user string
	uses          int
}

// maxResponses is how often a response_url may be used.
const maxResponses = 5

// ResponseURL hands out a response_url for a command typed by user in
// channel, for SlashCommand.ResponseURL. What is posted to it is kept as
// an ephemeral message to user in channel (or a message for everyone with
// response_type in_channel), and recorded as a call of method
// "response_url".
func (s *Server) ResponseURL(channel, user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	id := fmt.Sprintf("R%06d", s.seq)
	s.responses[id] = &responseURL{channel: channel, user: user}
	return s.srv.URL + "/response/" + id
}

func (s *Server) serveResponse(w http.ResponseWriter, r *http.Request) {
	params, _, err := readParams(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	call := Call{Method: "response_url", Params: params, Status: http.StatusOK}
	defer func() {
		s.calls = append(s.calls, call)
		close(s.changed)
		s.changed = make(chan struct{})
	}()
	ru := s.responses[strings.TrimPrefix(r.URL.Path, "/response/")]
	switch {
	case ru == nil || ru.uses >= maxResponses:
		call.Status, call.Error = http.StatusNotFound, "expired_url"
		http.Error(w, "expired_url", http.StatusNotFound)
		return
	case params.Get("text") == "" && params.Get("blocks") == "":
		call.Status, call.Error = http.StatusBadRequest, "no_text"
		http.Error(w, "no_text", http.StatusBadRequest)
		return
	case checkBlocks(params.Get("blocks")) != "":
		call.Status, call.Error = http.StatusBadRequest, "invalid_blocks"
		http.Error(w, "invalid_blocks", http.StatusBadRequest)
		return
	}
	ru.uses++
	m := &Message{Channel: ru.channel, TS: s.nextTS(), Text: params.Get("text"), Blocks: params.Get("blocks"), Ephemeral: params.Get("response_type") != "in_channel", User: ru.user}
	if !m.Ephemeral {
		m.User = BotUserID
	}
	m.Versions, m.Times = []string{m.Rendered()}, []time.Time{time.Now()}
	s.messages = append(s.messages, m)
	_, _ = io.WriteString(w, "ok")
}
