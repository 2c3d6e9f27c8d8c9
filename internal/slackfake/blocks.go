package slackfake

import (
	"encoding/json"
	"unicode/utf8"
)

// Block rules the fake enforces, as Slack refuses a message that breaks
// them with invalid_blocks:
//   - a message holds at most 50 blocks (the blocks argument of
//     chat.postMessage and chat.update);
//   - a table block (docs.slack.dev/reference/block-kit/blocks/table-block):
//     "rows … Required … Maximum 100 rows. Each row object is an array
//     with a max of 20 table cells. Table cells can have a type of
//     raw_text or rich_text"; column_settings "Maximum 20 items". A
//     raw_number cell is accepted too: slack-go v0.35.0 (block_table.go)
//     notes that Slack's current reference documents it;
//   - and, as clients that hit them report, at most 10,000 characters
//     over all cells of a table, an empty cell counting as one
//     (getnao/nao#1178, vellum-ai/vellum-assistant#36219), and one table
//     per message (vercel/chat#194, openclaw/openclaw#57717).
const (
	maxBlocks         = 50
	maxTableRows      = 100
	maxTableCells     = 20
	maxColumnSettings = 20
	maxTableChars     = 10000
)

// checkBlocks returns "invalid_blocks" when the blocks JSON breaks a rule
// above (or is not a JSON array of blocks), "" otherwise.
func checkBlocks(blocks string) string {
	if blocks == "" {
		return ""
	}
	var bs []struct {
		Type           string              `json:"type"`
		Rows           [][]json.RawMessage `json:"rows"`
		ColumnSettings []json.RawMessage   `json:"column_settings"`
	}
	if err := json.Unmarshal([]byte(blocks), &bs); err != nil {
		return "invalid_blocks"
	}
	if len(bs) > maxBlocks {
		return "invalid_blocks"
	}
	tables := 0
	for _, b := range bs {
		if b.Type != "table" {
			continue
		}
		if tables++; tables > 1 {
			return "invalid_blocks"
		}
		chars := 0
		if len(b.Rows) == 0 || len(b.Rows) > maxTableRows || len(b.ColumnSettings) > maxColumnSettings {
			return "invalid_blocks"
		}
		for _, row := range b.Rows {
			if len(row) > maxTableCells {
				return "invalid_blocks"
			}
			for _, c := range row {
				var cell struct {
					Type string  `json:"type"`
					Text *string `json:"text"`
				}
				if json.Unmarshal(c, &cell) != nil {
					return "invalid_blocks"
				}
				if cell.Text != nil {
					chars += max(1, utf8.RuneCountInString(*cell.Text))
				} else {
					chars++
				}
				switch {
				case cell.Type == "raw_text" && cell.Text != nil:
				case cell.Type == "rich_text", cell.Type == "raw_number":
				default:
					return "invalid_blocks"
				}
			}
		}
		if chars > maxTableChars {
			return "invalid_blocks"
		}
	}
	return ""
}
