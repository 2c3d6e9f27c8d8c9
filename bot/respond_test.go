package bot_test

import (
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy/internal/slackfake"
)

// TestReplyWhereTheBotIsNotAMember: a command typed in a DM, or in a
// channel the bot was not invited to, is still answered: chat.postEphemeral
// fails there as on Slack (channel_not_found, not_in_channel), and the
// answer goes through the command's response_url (issue 15, attack 8).
func TestReplyWhereTheBotIsNotAMember(t *testing.T) {
	for _, tc := range []struct{ name, channel, code string }{
		{"direct message", "D0ALICE01", "channel_not_found"},
		{"channel without the bot", "C0OTHER01", "not_in_channel"},
		{"private channel without the bot", "G0PRIVATE1", "channel_not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{members: map[string][]string{
				channel:      {slackfake.BotUserID, alice, carol},
				"D0ALICE01":  {alice, carol},
				"C0OTHER01":  {alice},
				"G0PRIVATE1": {alice},
			}})
			ru := h.slack.ResponseURL(tc.channel, alice)
			resp, err := h.send.Slash(t.Context(), slackfake.SlashCommand{UserID: alice, ChannelID: tc.channel, Text: "status", ResponseURL: ru})
			if err != nil || resp.Status != 200 {
				t.Fatalf("slash: %v %d", err, resp.Status)
			}
			h.settle()
			calls := h.slack.Calls("chat.postEphemeral")
			if len(calls) == 0 || calls[0].Error != tc.code {
				t.Fatalf("chat.postEphemeral calls %+v, want one failing with %s", calls, tc.code)
			}
			if c := h.slack.Calls("response_url"); len(c) != 1 || c[0].Status != 200 || c[0].Params.Get("response_type") != "ephemeral" {
				t.Fatalf("response_url calls: %+v", c)
			}
			got := h.ephemerals(alice)
			if len(got) != 1 || !strings.Contains(got[0], "ganon") {
				t.Errorf("alice saw %q, want the status", got)
			}
		})
	}
}
