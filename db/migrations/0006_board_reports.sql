-- The report schedule action posts the drift board only when it changed
-- since the last board it posted; this is what it last posted.
CREATE TABLE board_reports (
    schedule    TEXT    PRIMARY KEY,
    digest      TEXT    NOT NULL,           -- nixdeploy.Board.Digest of the posted board
    posted_at   INTEGER NOT NULL             -- unix nanoseconds
) WITHOUT ROWID;
