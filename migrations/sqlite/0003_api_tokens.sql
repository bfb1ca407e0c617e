-- API tokens: only a SHA-256 of each token is kept. A token belongs to one organization,
-- or (org_id NULL) is the residents' app token that may only report logins.
CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY,
    org_id     INTEGER REFERENCES organizations (id),
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
