-- A pipeline never runs twice at once, even from two processes on one database: a run
-- holds its pipeline's lease and renews it; a crashed holder's lease expires.
CREATE TABLE run_leases (
    org_id     INTEGER NOT NULL REFERENCES organizations (id),
    pipeline   TEXT NOT NULL,
    run_id     INTEGER NOT NULL REFERENCES runs (id),
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, pipeline)
);

-- What became of the e-mail report of a run ("sent to 2 address(es)" or the failure).
ALTER TABLE runs ADD COLUMN mail TEXT;
CREATE INDEX runs_pipeline ON runs (pipeline, id);
