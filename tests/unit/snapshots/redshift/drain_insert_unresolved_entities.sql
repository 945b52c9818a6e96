-- insert_unresolved_entities
INSERT INTO "atomic"."unresolved_entities" ("schema_uri", "root_id", "root_tstamp", "ref_root", "ref_parent", "source", "position", "reason", "entity", "entity_text", "load_tstamp")
SELECT CASE WHEN OCTET_LENGTH(d."uri") <= 1024 THEN d."uri" END, d."root_id", d."root_tstamp", 'events', 'events',
    d."source", d."position", d."reason",
    CASE WHEN IS_VALID_JSON(d."entity") THEN JSON_PARSE(d."entity") END,
    CASE WHEN IS_VALID_JSON(d."entity") THEN NULL ELSE d."entity" END,
    GETDATE()
FROM "clk_entity_drain" AS d
WHERE d."reason" IS NOT NULL
