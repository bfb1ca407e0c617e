-- Which process runs a run (host/pid/start) and when it last renewed: a start closes the
-- organization's runs whose process is gone, or that stopped renewing, as `interrupted`.
ALTER TABLE runs ADD COLUMN holder TEXT;
-- PostgreSQL also keeps the run's own session (`pid/start`), which the server ends when the
-- process dies, whatever its host.
ALTER TABLE runs ADD COLUMN session TEXT;
ALTER TABLE runs ADD COLUMN heartbeat INTEGER;
CREATE INDEX runs_running ON runs (org_id) WHERE status = 'running';
