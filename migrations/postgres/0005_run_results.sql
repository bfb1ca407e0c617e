-- Each run's per-record results (SPEC §12): gzip-compressed CSV in parts of about 256 KiB,
-- appended as chunks commit; the parts in order are one gzip stream.
CREATE TABLE run_results (
    run_id BIGINT NOT NULL REFERENCES runs (id),
    part   BIGINT NOT NULL,
    data   BYTEA NOT NULL,
    PRIMARY KEY (run_id, part)
);
