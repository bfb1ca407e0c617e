-- What every query reads for a card's phone. On PostgreSQL it is the cards' own unique index
-- (its buffer cache is the server's); SQLite keeps two tables behind the same name (its
-- migration 0009 says why).
CREATE VIEW client_phones AS
SELECT phone, org_id, id AS client_id FROM clients WHERE phone IS NOT NULL;
