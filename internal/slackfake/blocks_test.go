package slackfake_test

import (
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/nixdeploy/nixdeploy/internal/slackfake"
)

// The fake refuses tables that Slack refuses: more than 100 rows, more
// than 20 cells in a row, more than 10,000 characters, a cell of a type
// tables do not hold, a second table in one message.
func TestTableBlockLimits(t *testing.T) {
	s := slackfake.New(slackfake.Options{BotToken: "xoxb-test"})
	defer s.Close()
	api := slack.New("xoxb-test", slack.OptionAPIURL(s.APIURL()))
	table := func(rows, cells int) *slack.TableBlock {
		tb := slack.NewTableBlock("")
		for range rows {
			var row []slack.TableCell
			for range cells {
				row = append(row, slack.NewTableRawTextCell("x"))
			}
			tb.AddRow(row...)
		}
		return tb
	}
	post := func(b slack.Block) error {
		_, _, err := api.PostMessage("C1", slack.MsgOptionText("board", false), slack.MsgOptionBlocks(b))
		return err
	}
	if err := post(table(100, 20)); err != nil {
		t.Errorf("100 rows of 20 cells: %v", err)
	}
	for name, b := range map[string]slack.Block{
		"101 rows":      table(101, 3),
		"21 cells":      table(2, 21),
		"no rows":       table(0, 0),
		"an image cell": slack.NewTableBlock("").AddRow(&slack.TableRawTextCell{Type: "image"}),
	} {
		if err := post(b); err == nil || !strings.Contains(err.Error(), "invalid_blocks") {
			t.Errorf("%s: err = %v, want invalid_blocks", name, err)
		}
	}
}
