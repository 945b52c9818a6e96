-- drop_batch
DROP TABLE "clk_merge_batch"
