-- drop_drain_batch
DROP TABLE "clk_entity_drain"
