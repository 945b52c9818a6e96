-- drop_rows
DROP TABLE "clk_merge_rows"
