-- crm-import schema, SQLite. Organizations and sources are tenants and their accounting
-- systems; every external id is unique per (source, kind), and a source belongs to one
-- organization, so (source_id, ext_id) is the (organization, source, id) key of SPEC §2.

CREATE TABLE organizations (
    id   INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE
);

CREATE TABLE sources (
    id     INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES organizations (id),
    code   TEXT NOT NULL,
    UNIQUE (org_id, code)
);

CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    org_id      INTEGER NOT NULL REFERENCES organizations (id),
    pipeline    TEXT,
    trigger     TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL DEFAULT 'running',
    records     INTEGER NOT NULL DEFAULT 0,
    report      TEXT
);

CREATE TABLE premises (
    id               INTEGER PRIMARY KEY,
    org_id           INTEGER NOT NULL REFERENCES organizations (id),
    source_id        INTEGER NOT NULL REFERENCES sources (id),
    ext_id           TEXT NOT NULL,
    address          TEXT NOT NULL,
    number           TEXT NOT NULL,
    kind             TEXT NOT NULL,
    floor            INTEGER,
    entrance         INTEGER,
    rooms            INTEGER,
    area             REAL,
    cadastral_number TEXT,
    UNIQUE (source_id, ext_id)
);

CREATE TABLE accounts (
    id         INTEGER PRIMARY KEY,
    org_id     INTEGER NOT NULL REFERENCES organizations (id),
    source_id  INTEGER NOT NULL REFERENCES sources (id),
    ext_id     TEXT NOT NULL,
    premise_id INTEGER NOT NULL REFERENCES premises (id),
    number     TEXT NOT NULL,
    area       REAL,
    residents  INTEGER,
    UNIQUE (source_id, ext_id),
    UNIQUE (org_id, number)
);

CREATE TABLE clients (
    id        INTEGER PRIMARY KEY,
    org_id    INTEGER NOT NULL REFERENCES organizations (id),
    name      TEXT NOT NULL,
    phone     TEXT,
    email     TEXT,
    logged_in INTEGER NOT NULL DEFAULT 0
);
-- The matching table keeps one current card per phone in an organization. Phone first, so
-- the same index serves case 2c and the app's login, which look a phone up across
-- organizations (one random-order index on a big table instead of two).
CREATE UNIQUE INDEX clients_phone_org ON clients (phone, org_id) WHERE phone IS NOT NULL;

CREATE TABLE client_external_ids (
    source_id INTEGER NOT NULL REFERENCES sources (id),
    ext_id    TEXT NOT NULL,
    client_id INTEGER NOT NULL REFERENCES clients (id),
    PRIMARY KEY (source_id, ext_id)
) WITHOUT ROWID;
CREATE INDEX client_external_ids_client ON client_external_ids (client_id);

CREATE TABLE client_premises (
    client_id  INTEGER NOT NULL REFERENCES clients (id),
    premise_id INTEGER NOT NULL REFERENCES premises (id),
    source_id  INTEGER NOT NULL REFERENCES sources (id),
    role       TEXT NOT NULL,
    PRIMARY KEY (client_id, premise_id)
) WITHOUT ROWID;

CREATE TABLE client_accounts (
    client_id  INTEGER NOT NULL REFERENCES clients (id),
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    source_id  INTEGER NOT NULL REFERENCES sources (id),
    PRIMARY KEY (client_id, account_id)
) WITHOUT ROWID;

-- Phones a card had before its current one (the current phone is on the card).
CREATE TABLE phone_history (
    id          INTEGER PRIMARY KEY,
    org_id      INTEGER NOT NULL REFERENCES organizations (id),
    client_id   INTEGER NOT NULL REFERENCES clients (id),
    phone       TEXT NOT NULL,
    replaced_at TEXT NOT NULL,
    run_id      INTEGER REFERENCES runs (id)
);
CREATE INDEX phone_history_phone ON phone_history (org_id, phone);
CREATE INDEX phone_history_client ON phone_history (client_id);

-- Case 2d: the loser card is deleted, this row remembers it.
CREATE TABLE merges (
    id                INTEGER PRIMARY KEY,
    org_id            INTEGER NOT NULL REFERENCES organizations (id),
    loser_client_id   INTEGER NOT NULL,
    winner_client_id  INTEGER NOT NULL REFERENCES clients (id),
    loser_external_ids TEXT NOT NULL,
    run_id            INTEGER REFERENCES runs (id),
    merged_at         TEXT NOT NULL
);
