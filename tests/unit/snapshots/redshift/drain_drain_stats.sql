-- drain_stats
SELECT COALESCE(SUM(CASE WHEN d."reason" IS NULL THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN d."reason" IS NULL THEN 0 ELSE 1 END), 0)
FROM "clk_entity_drain" AS d
