-- Pipelines made in the console: the same TOML a pipeline file holds (its organization is
-- the row's), and the FTP password typed in the form, sealed with CRM_SECRET_KEY.
CREATE TABLE pipelines (
    id           INTEGER PRIMARY KEY,
    org_id       INTEGER NOT NULL REFERENCES organizations (id),
    name         TEXT NOT NULL UNIQUE,
    definition   TEXT NOT NULL,
    ftp_password TEXT,
    updated_at   TEXT NOT NULL
);
