-- A fourth phone table between the middle one and the big one. Every move rewrites about
-- every page of the table it fills, so with one table between the recent and the big one the
-- pages a load writes grew with the square root of its size (a move into the big table every
-- ten recent tables); with two, each five times the one before, a 10M-card load writes about
-- 30 % fewer (docs/architecture.md, "The cards' phones on SQLite").
CREATE TABLE card_phones_older (
    phone     TEXT NOT NULL,
    org_id    INTEGER NOT NULL,
    client_id INTEGER NOT NULL,
    PRIMARY KEY (phone, org_id)
) WITHOUT ROWID;

DROP VIEW client_phones;
CREATE VIEW client_phones AS
SELECT phone, org_id, client_id FROM card_phones
UNION ALL
SELECT phone, org_id, client_id FROM card_phones_older
UNION ALL
SELECT phone, org_id, client_id FROM card_phones_middle
UNION ALL
SELECT phone, org_id, client_id FROM card_phones_recent;

DROP TRIGGER clients_phone_update;
CREATE TRIGGER clients_phone_update AFTER UPDATE OF phone ON clients
WHEN old.phone IS NOT new.phone
BEGIN
    DELETE FROM card_phones WHERE phone = old.phone AND org_id = old.org_id;
    DELETE FROM card_phones_older WHERE phone = old.phone AND org_id = old.org_id;
    DELETE FROM card_phones_middle WHERE phone = old.phone AND org_id = old.org_id;
    DELETE FROM card_phones_recent WHERE phone = old.phone AND org_id = old.org_id;
    SELECT RAISE(FAIL, 'UNIQUE constraint failed: clients.phone, clients.org_id')
     WHERE EXISTS (SELECT 1 FROM card_phones WHERE phone = new.phone AND org_id = new.org_id)
        OR EXISTS (SELECT 1 FROM card_phones_older
                    WHERE phone = new.phone AND org_id = new.org_id)
        OR EXISTS (SELECT 1 FROM card_phones_middle
                    WHERE phone = new.phone AND org_id = new.org_id);
    INSERT OR FAIL INTO card_phones_recent (phone, org_id, client_id)
    SELECT new.phone, new.org_id, new.id WHERE new.phone IS NOT NULL;
END;

DROP TRIGGER clients_phone_delete;
CREATE TRIGGER clients_phone_delete AFTER DELETE ON clients WHEN old.phone IS NOT NULL
BEGIN
    DELETE FROM card_phones WHERE phone = old.phone AND org_id = old.org_id;
    DELETE FROM card_phones_older WHERE phone = old.phone AND org_id = old.org_id;
    DELETE FROM card_phones_middle WHERE phone = old.phone AND org_id = old.org_id;
    DELETE FROM card_phones_recent WHERE phone = old.phone AND org_id = old.org_id;
END;
