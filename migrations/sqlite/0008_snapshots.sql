-- Full snapshots (SPEC §12): the run that last saw a premise, account or client link, and
-- the run that archived it when a snapshot run did not. Archived rows stay; exports and reads
-- leave them out unless asked for.
ALTER TABLE premises ADD COLUMN seen_run INTEGER;
ALTER TABLE premises ADD COLUMN archived_run INTEGER;
ALTER TABLE premises ADD COLUMN archived_at TEXT;
ALTER TABLE accounts ADD COLUMN seen_run INTEGER;
ALTER TABLE accounts ADD COLUMN archived_run INTEGER;
ALTER TABLE accounts ADD COLUMN archived_at TEXT;
ALTER TABLE client_premises ADD COLUMN seen_run INTEGER;
ALTER TABLE client_premises ADD COLUMN archived_run INTEGER;
ALTER TABLE client_premises ADD COLUMN archived_at TEXT;
ALTER TABLE client_accounts ADD COLUMN seen_run INTEGER;
ALTER TABLE client_accounts ADD COLUMN archived_run INTEGER;
ALTER TABLE client_accounts ADD COLUMN archived_at TEXT;
-- A run start asks whether its source has archived rows (then what it sees is restored).
CREATE INDEX premises_archived ON premises (source_id) WHERE archived_run IS NOT NULL;
CREATE INDEX accounts_archived ON accounts (source_id) WHERE archived_run IS NOT NULL;
CREATE INDEX client_premises_archived ON client_premises (source_id) WHERE archived_run IS NOT NULL;
CREATE INDEX client_accounts_archived ON client_accounts (source_id) WHERE archived_run IS NOT NULL;
