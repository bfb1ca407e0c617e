-- The cards' phones, kept in three tables instead of an index on clients. Phones arrive in
-- random order, so each new card's index entry landed on a random page: once the index
-- outgrew the writer's cache, every insert read a page and wrote it back. New entries go to
-- a small table that stays in the cache; the store moves them in phone order into a middle
-- one whenever the small one fills, and the middle one into the big one whenever it fills,
-- so each move touches a page of the table it fills once for many phones. Triggers keep the
-- three in step with clients on every write path; `client_phones` is what every query reads
-- (docs/architecture.md, "The cards' phones on SQLite").
CREATE TABLE card_phones (
    phone     TEXT NOT NULL,
    org_id    INTEGER NOT NULL,
    client_id INTEGER NOT NULL,
    PRIMARY KEY (phone, org_id)
) WITHOUT ROWID;

CREATE TABLE card_phones_middle (
    phone     TEXT NOT NULL,
    org_id    INTEGER NOT NULL,
    client_id INTEGER NOT NULL,
    PRIMARY KEY (phone, org_id)
) WITHOUT ROWID;

CREATE TABLE card_phones_recent (
    phone     TEXT NOT NULL,
    org_id    INTEGER NOT NULL,
    client_id INTEGER NOT NULL,
    PRIMARY KEY (phone, org_id)
) WITHOUT ROWID;

INSERT INTO card_phones (phone, org_id, client_id)
SELECT phone, org_id, id FROM clients WHERE phone IS NOT NULL ORDER BY phone, org_id;

DROP INDEX clients_phone_org;

CREATE VIEW client_phones AS
SELECT phone, org_id, client_id FROM card_phones
UNION ALL
SELECT phone, org_id, client_id FROM card_phones_middle
UNION ALL
SELECT phone, org_id, client_id FROM card_phones_recent;

-- One card per phone in an organization, as the unique index kept it: each table's primary
-- key within it; across them, a phone changed is checked at once, and a new card's phone
-- when it moves (checking it on insert would read the random pages the moves exist to spare).
CREATE TRIGGER clients_phone_insert AFTER INSERT ON clients WHEN new.phone IS NOT NULL
BEGIN
    INSERT OR FAIL INTO card_phones_recent (phone, org_id, client_id) VALUES (new.phone, new.org_id, new.id);
END;

CREATE TRIGGER clients_phone_update AFTER UPDATE OF phone ON clients
WHEN old.phone IS NOT new.phone
BEGIN
    DELETE FROM card_phones WHERE phone = old.phone AND org_id = old.org_id;
    DELETE FROM card_phones_middle WHERE phone = old.phone AND org_id = old.org_id;
    DELETE FROM card_phones_recent WHERE phone = old.phone AND org_id = old.org_id;
    SELECT RAISE(FAIL, 'UNIQUE constraint failed: clients.phone, clients.org_id')
     WHERE EXISTS (SELECT 1 FROM card_phones WHERE phone = new.phone AND org_id = new.org_id)
        OR EXISTS (SELECT 1 FROM card_phones_middle
                    WHERE phone = new.phone AND org_id = new.org_id);
    INSERT OR FAIL INTO card_phones_recent (phone, org_id, client_id)
    SELECT new.phone, new.org_id, new.id WHERE new.phone IS NOT NULL;
END;

CREATE TRIGGER clients_phone_delete AFTER DELETE ON clients WHEN old.phone IS NOT NULL
BEGIN
    DELETE FROM card_phones WHERE phone = old.phone AND org_id = old.org_id;
    DELETE FROM card_phones_middle WHERE phone = old.phone AND org_id = old.org_id;
    DELETE FROM card_phones_recent WHERE phone = old.phone AND org_id = old.org_id;
END;
