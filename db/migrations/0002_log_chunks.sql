-- A deployment's log is stored in chunks of consecutive lines, one row per
-- batch the deployer flushes, instead of one row per line: SQLite's cost is
-- per row, and a build can print millions of lines (see bench/README.md).
-- db/logs.go owns the encoding of meta; a chunk whose meta is empty is one
-- line whose seq, time, host, step and stream are the row's own, which is
-- how the rows of log_lines are carried over.
CREATE TABLE log_chunks (
    id            INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    first_seq     INTEGER NOT NULL,
    last_seq      INTEGER NOT NULL,
    lines         INTEGER NOT NULL,
    -- the first line's time, host, step and stream
    ts            INTEGER NOT NULL,
    host          TEXT    NOT NULL,
    step          TEXT    NOT NULL,
    stream        TEXT    NOT NULL,
    meta          BLOB    NOT NULL,
    text          BLOB    NOT NULL,
    UNIQUE (deployment_id, first_seq)
);

INSERT INTO log_chunks (deployment_id, first_seq, last_seq, lines, ts, host, step, stream, meta, text)
    SELECT deployment_id, seq, seq, 1, ts, host, step, stream, x'', CAST(text AS BLOB)
    FROM log_lines ORDER BY deployment_id, seq;

DROP TABLE log_lines;

-- Seq numbers are unique within a deployment: a chunk must not overlap the
-- range of an earlier one. Chunks never overlap each other, so only the
-- chunk that starts last at or before the new one's end can collide.
CREATE TRIGGER log_chunks_no_overlap BEFORE INSERT ON log_chunks
WHEN (SELECT last_seq FROM log_chunks
      WHERE deployment_id = NEW.deployment_id AND first_seq <= NEW.last_seq
      ORDER BY first_seq DESC LIMIT 1) >= NEW.first_seq
BEGIN
    SELECT RAISE(ABORT, 'log line seq repeated');
END;
