-- Each run's per-record results (SPEC §12): gzip-compressed CSV in parts of about 256 KiB,
-- appended as chunks commit; the parts in order are one gzip stream.
CREATE TABLE run_results (
    run_id INTEGER NOT NULL REFERENCES runs (id),
    part   INTEGER NOT NULL,
    data   BLOB NOT NULL,
    PRIMARY KEY (run_id, part)
) WITHOUT ROWID;
