-- rows
CREATE TEMP TABLE "clk_merge_rows" DISTKEY ("event_id") AS
SELECT
    b."app_id", b."platform", b."etl_tstamp", b."collector_tstamp", b."dvce_created_tstamp", b."event", b."txn_id", b."name_tracker", b."v_tracker", b."v_collector", b."v_etl", b."user_id", b."user_ipaddress", b."user_fingerprint", b."domain_userid", b."domain_sessionidx", b."network_userid", b."geo_country", b."geo_region", b."geo_city", b."geo_zipcode", b."geo_latitude", b."geo_longitude", b."geo_region_name", b."ip_isp", b."ip_organization", b."ip_domain", b."ip_netspeed", b."page_url", b."page_title", b."page_referrer", b."page_urlscheme", b."page_urlhost", b."page_urlport", b."page_urlpath", b."page_urlquery", b."page_urlfragment", b."refr_urlscheme", b."refr_urlhost", b."refr_urlport", b."refr_urlpath", b."refr_urlquery", b."refr_urlfragment", b."refr_medium", b."refr_source", b."refr_term", b."mkt_medium", b."mkt_source", b."mkt_term", b."mkt_content", b."mkt_campaign", b."se_category", b."se_action", b."se_label", b."se_property", b."se_value", b."tr_orderid", b."tr_affiliation", b."tr_total", b."tr_tax", b."tr_shipping", b."tr_city", b."tr_state", b."tr_country", b."ti_orderid", b."ti_sku", b."ti_name", b."ti_category", b."ti_price", b."ti_quantity", b."pp_xoffset_min", b."pp_xoffset_max", b."pp_yoffset_min", b."pp_yoffset_max", b."useragent", b."br_name", b."br_family", b."br_version", b."br_type", b."br_renderengine", b."br_lang", b."br_features_pdf", b."br_features_flash", b."br_features_java", b."br_features_director", b."br_features_quicktime", b."br_features_realplayer", b."br_features_windowsmedia", b."br_features_gears", b."br_features_silverlight", b."br_cookies", b."br_colordepth", b."br_viewwidth", b."br_viewheight", b."os_name", b."os_family", b."os_manufacturer", b."os_timezone", b."dvce_type", b."dvce_ismobile", b."dvce_screenwidth", b."dvce_screenheight", b."doc_charset", b."doc_width", b."doc_height", b."tr_currency", b."tr_total_base", b."tr_tax_base", b."tr_shipping_base", b."ti_currency", b."ti_price_base", b."base_currency", b."geo_timezone", b."mkt_clickid", b."mkt_network", b."etl_tags", b."dvce_sent_tstamp", b."refr_domain_userid", b."refr_dvce_tstamp", b."domain_sessionid", b."derived_tstamp", b."event_vendor", b."event_name", b."event_format", b."event_version", b."event_fingerprint", b."true_tstamp",
    b."unstruct_event", b."contexts", b."derived_contexts",
    CASE
        WHEN same."event_id" IS NOT NULL OR (known."event_id" IS NULL AND b."id_rank" = 1) THEN b."event_id"
        ELSE SUBSTRING(b."id_hash", 1, 8) || '-' || SUBSTRING(b."id_hash", 9, 4) || '-5' || SUBSTRING(b."id_hash", 14, 3) || '-' || TRANSLATE(SUBSTRING(b."id_hash", 17, 1), '0123456789abcdef', '89ab89ab89ab89ab') || SUBSTRING(b."id_hash", 18, 3) || '-' || SUBSTRING(b."id_hash", 21, 12)
    END AS "event_id",
    b."event_id" AS "original_event_id"
FROM (
    SELECT x.*, SHA1('clickstream-etl:' || x."event_id" || '/' || COALESCE(x."event_fingerprint", '')) AS "id_hash"
    FROM "clk_merge_batch" AS x
) AS b
LEFT JOIN (
    SELECT DISTINCT e."event_id"
    FROM "atomic"."events" AS e
    JOIN (SELECT DISTINCT "event_id" FROM "clk_merge_batch") AS i ON i."event_id" = e."event_id"
) AS known ON known."event_id" = b."event_id"
LEFT JOIN (
    SELECT DISTINCT e."event_id", COALESCE(e."event_fingerprint", '') AS "fingerprint"
    FROM "atomic"."events" AS e
    JOIN (SELECT DISTINCT "event_id" FROM "clk_merge_batch") AS i ON i."event_id" = e."event_id"
) AS same ON same."event_id" = b."event_id" AND same."fingerprint" = COALESCE(b."event_fingerprint", '')
