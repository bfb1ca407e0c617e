-- The phone tables keyed by organization first. A move fills a table in key order; keyed by
-- phone, one organization's phones lay among every other's, so a move rewrote the pages of all
-- of them, and a large load into a database that already held another organization paid for
-- that one's phones on every move. Keyed by organization, a move rewrites only the pages of the
-- organization it moves for. The view and triggers read the tables by name and are made again
-- over the new ones unchanged (an applied migration is never edited).
DROP VIEW client_phones;
DROP TRIGGER clients_phone_insert;
DROP TRIGGER clients_phone_update;
DROP TRIGGER clients_phone_delete;

CREATE TABLE card_phones_by_org (
    org_id    INTEGER NOT NULL,
    phone     TEXT NOT NULL,
    client_id INTEGER NOT NULL,
    PRIMARY KEY (org_id, phone)
) WITHOUT ROWID;
INSERT INTO card_phones_by_org (org_id, phone, client_id)
SELECT org_id, phone, client_id FROM card_phones ORDER BY org_id, phone;
DROP TABLE card_phones;
ALTER TABLE card_phones_by_org RENAME TO card_phones;

CREATE TABLE card_phones_older_by_org (
    org_id    INTEGER NOT NULL,
    phone     TEXT NOT NULL,
    client_id INTEGER NOT NULL,
    PRIMARY KEY (org_id, phone)
) WITHOUT ROWID;
INSERT INTO card_phones_older_by_org (org_id, phone, client_id)
SELECT org_id, phone, client_id FROM card_phones_older ORDER BY org_id, phone;
DROP TABLE card_phones_older;
ALTER TABLE card_phones_older_by_org RENAME TO card_phones_older;

CREATE TABLE card_phones_middle_by_org (
    org_id    INTEGER NOT NULL,
    phone     TEXT NOT NULL,
    client_id INTEGER NOT NULL,
    PRIMARY KEY (org_id, phone)
) WITHOUT ROWID;
INSERT INTO card_phones_middle_by_org (org_id, phone, client_id)
SELECT org_id, phone, client_id FROM card_phones_middle ORDER BY org_id, phone;
DROP TABLE card_phones_middle;
ALTER TABLE card_phones_middle_by_org RENAME TO card_phones_middle;

CREATE TABLE card_phones_recent_by_org (
    org_id    INTEGER NOT NULL,
    phone     TEXT NOT NULL,
    client_id INTEGER NOT NULL,
    PRIMARY KEY (org_id, phone)
) WITHOUT ROWID;
INSERT INTO card_phones_recent_by_org (org_id, phone, client_id)
SELECT org_id, phone, client_id FROM card_phones_recent ORDER BY org_id, phone;
DROP TABLE card_phones_recent;
ALTER TABLE card_phones_recent_by_org RENAME TO card_phones_recent;

CREATE VIEW client_phones AS
SELECT phone, org_id, client_id FROM card_phones
UNION ALL
SELECT phone, org_id, client_id FROM card_phones_older
UNION ALL
SELECT phone, org_id, client_id FROM card_phones_middle
UNION ALL
SELECT phone, org_id, client_id FROM card_phones_recent;

CREATE TRIGGER clients_phone_insert AFTER INSERT ON clients WHEN new.phone IS NOT NULL
BEGIN
    INSERT OR FAIL INTO card_phones_recent (phone, org_id, client_id) VALUES (new.phone, new.org_id, new.id);
END;

CREATE TRIGGER clients_phone_update AFTER UPDATE OF phone ON clients
WHEN old.phone IS NOT new.phone
BEGIN
    DELETE FROM card_phones WHERE org_id = old.org_id AND phone = old.phone;
    DELETE FROM card_phones_older WHERE org_id = old.org_id AND phone = old.phone;
    DELETE FROM card_phones_middle WHERE org_id = old.org_id AND phone = old.phone;
    DELETE FROM card_phones_recent WHERE org_id = old.org_id AND phone = old.phone;
    SELECT RAISE(FAIL, 'UNIQUE constraint failed: clients.phone, clients.org_id')
     WHERE EXISTS (SELECT 1 FROM card_phones WHERE org_id = new.org_id AND phone = new.phone)
        OR EXISTS (SELECT 1 FROM card_phones_older
                    WHERE org_id = new.org_id AND phone = new.phone)
        OR EXISTS (SELECT 1 FROM card_phones_middle
                    WHERE org_id = new.org_id AND phone = new.phone);
    INSERT OR FAIL INTO card_phones_recent (phone, org_id, client_id)
    SELECT new.phone, new.org_id, new.id WHERE new.phone IS NOT NULL;
END;

CREATE TRIGGER clients_phone_delete AFTER DELETE ON clients WHEN old.phone IS NOT NULL
BEGIN
    DELETE FROM card_phones WHERE org_id = old.org_id AND phone = old.phone;
    DELETE FROM card_phones_older WHERE org_id = old.org_id AND phone = old.phone;
    DELETE FROM card_phones_middle WHERE org_id = old.org_id AND phone = old.phone;
    DELETE FROM card_phones_recent WHERE org_id = old.org_id AND phone = old.phone;
END;
