package slackfake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// socketHub is the Socket Mode side of the fake: apps.connections.open
// points a client at /socket, and the test pushes envelopes through it and
// reads the client's acks.
type socketHub struct {
	s        *Server
	upgrader websocket.Upgrader

	mu        sync.Mutex
	conn      *websocket.Conn
	connected chan struct{}
	acks      map[string]chan json.RawMessage
	seq       int
	closed    bool

	writeMu sync.Mutex
}

func newSocketHub(s *Server) *socketHub {
	return &socketHub{
		s: s, connected: make(chan struct{}), acks: map[string]chan json.RawMessage{},
		// slack-go dials with Origin https://api.slack.com.
		upgrader: websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }},
	}
}

func (h *socketHub) serve(w http.ResponseWriter, r *http.Request) {
	conn, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		conn.Close()
		return
	}
	if h.conn != nil {
		h.conn.Close()
	}
	h.conn = conn
	select {
	case <-h.connected:
	default:
		close(h.connected)
	}
	h.mu.Unlock()

	// Slack greets with hello and keeps the connection alive with pings;
	// the client treats a missing ping as a dead connection.
	_ = h.write(map[string]any{"type": "hello", "num_connections": 1,
		"debug_info": map[string]any{"host": "applink-fake"}, "connection_info": map[string]any{"app_id": "A0FAKE0001"}})
	h.writeMu.Lock()
	_ = conn.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(5*time.Second))
	h.writeMu.Unlock()

	for {
		var ack struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if err := conn.ReadJSON(&ack); err != nil {
			return
		}
		h.mu.Lock()
		ch := h.acks[ack.EnvelopeID]
		delete(h.acks, ack.EnvelopeID)
		h.mu.Unlock()
		if ch != nil {
			ch <- ack.Payload
		}
	}
}

func (h *socketHub) write(v any) error {
	h.mu.Lock()
	conn := h.conn
	h.mu.Unlock()
	if conn == nil {
		return errors.New("slackfake: no socket mode client connected")
	}
	h.writeMu.Lock()
	defer h.writeMu.Unlock()
	return conn.WriteJSON(v)
}

func (h *socketHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.conn != nil {
		h.conn.Close()
	}
}

// WaitSocket waits until a Socket Mode client has connected.
func (s *Server) WaitSocket(ctx context.Context) error {
	select {
	case <-s.socket.connected:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for socket mode client: %w", ctx.Err())
	}
}

// SocketSlash delivers a slash command over Socket Mode and returns the
// payload of the client's ack.
func (s *Server) SocketSlash(ctx context.Context, c SlashCommand) (json.RawMessage, error) {
	return s.socketSend(ctx, "slash_commands", c.fields())
}

// SocketEvent delivers an Events API callback over Socket Mode and returns
// the payload of the client's ack (usually empty).
func (s *Server) SocketEvent(ctx context.Context, eventID string, event any) (json.RawMessage, error) {
	return s.socketSend(ctx, "events_api", callback(eventID, event))
}

func (s *Server) socketSend(ctx context.Context, typ string, payload any) (json.RawMessage, error) {
	h := s.socket
	h.mu.Lock()
	h.seq++
	id := fmt.Sprintf("env-%04d", h.seq)
	ch := make(chan json.RawMessage, 1)
	h.acks[id] = ch
	h.mu.Unlock()
	err := h.write(map[string]any{"type": typ, "envelope_id": id, "payload": payload, "accepts_response_payload": typ == "slash_commands"})
	if err != nil {
		return nil, err
	}
	select {
	case p := <-ch:
		return p, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for ack of %s: %w", id, ctx.Err())
	}
}
