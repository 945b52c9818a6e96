-- create_entity_slots
CREATE TABLE IF NOT EXISTS "atomic"."events_entity_slots" ("i" INTEGER NOT NULL)
DISTSTYLE ALL
