-- batch
CREATE TEMP TABLE "clk_merge_batch" DISTKEY ("event_id") AS
SELECT
    CAST(d."app_id" AS VARCHAR(255)) AS "app_id",
    CAST(d."platform" AS VARCHAR(255)) AS "platform",
    d."etl_tstamp" AS "etl_tstamp",
    d."collector_tstamp" AS "collector_tstamp",
    d."dvce_created_tstamp" AS "dvce_created_tstamp",
    CAST(d."event" AS VARCHAR(128)) AS "event",
    CAST(d."event_id" AS CHAR(36)) AS "event_id",
    d."txn_id" AS "txn_id",
    CAST(d."name_tracker" AS VARCHAR(128)) AS "name_tracker",
    CAST(d."v_tracker" AS VARCHAR(100)) AS "v_tracker",
    CAST(d."v_collector" AS VARCHAR(100)) AS "v_collector",
    CAST(d."v_etl" AS VARCHAR(100)) AS "v_etl",
    CAST(d."user_id" AS VARCHAR(255)) AS "user_id",
    CAST(d."user_ipaddress" AS VARCHAR(128)) AS "user_ipaddress",
    CAST(d."user_fingerprint" AS VARCHAR(128)) AS "user_fingerprint",
    CAST(d."domain_userid" AS VARCHAR(128)) AS "domain_userid",
    d."domain_sessionidx" AS "domain_sessionidx",
    CAST(d."network_userid" AS VARCHAR(128)) AS "network_userid",
    CAST(d."geo_country" AS CHAR(2)) AS "geo_country",
    CAST(d."geo_region" AS CHAR(3)) AS "geo_region",
    CAST(d."geo_city" AS VARCHAR(75)) AS "geo_city",
    CAST(d."geo_zipcode" AS VARCHAR(15)) AS "geo_zipcode",
    d."geo_latitude" AS "geo_latitude",
    d."geo_longitude" AS "geo_longitude",
    CAST(d."geo_region_name" AS VARCHAR(100)) AS "geo_region_name",
    CAST(d."ip_isp" AS VARCHAR(100)) AS "ip_isp",
    CAST(d."ip_organization" AS VARCHAR(128)) AS "ip_organization",
    CAST(d."ip_domain" AS VARCHAR(128)) AS "ip_domain",
    CAST(d."ip_netspeed" AS VARCHAR(100)) AS "ip_netspeed",
    CAST(d."page_url" AS VARCHAR(10000)) AS "page_url",
    CAST(d."page_title" AS VARCHAR(2000)) AS "page_title",
    CAST(d."page_referrer" AS VARCHAR(10000)) AS "page_referrer",
    CAST(d."page_urlscheme" AS VARCHAR(16)) AS "page_urlscheme",
    CAST(d."page_urlhost" AS VARCHAR(255)) AS "page_urlhost",
    d."page_urlport" AS "page_urlport",
    CAST(d."page_urlpath" AS VARCHAR(3000)) AS "page_urlpath",
    CAST(d."page_urlquery" AS VARCHAR(6000)) AS "page_urlquery",
    CAST(d."page_urlfragment" AS VARCHAR(3000)) AS "page_urlfragment",
    CAST(d."refr_urlscheme" AS VARCHAR(16)) AS "refr_urlscheme",
    CAST(d."refr_urlhost" AS VARCHAR(255)) AS "refr_urlhost",
    d."refr_urlport" AS "refr_urlport",
    CAST(d."refr_urlpath" AS VARCHAR(6000)) AS "refr_urlpath",
    CAST(d."refr_urlquery" AS VARCHAR(6000)) AS "refr_urlquery",
    CAST(d."refr_urlfragment" AS VARCHAR(3000)) AS "refr_urlfragment",
    CAST(d."refr_medium" AS VARCHAR(25)) AS "refr_medium",
    CAST(d."refr_source" AS VARCHAR(50)) AS "refr_source",
    CAST(d."refr_term" AS VARCHAR(255)) AS "refr_term",
    CAST(d."mkt_medium" AS VARCHAR(255)) AS "mkt_medium",
    CAST(d."mkt_source" AS VARCHAR(255)) AS "mkt_source",
    CAST(d."mkt_term" AS VARCHAR(255)) AS "mkt_term",
    CAST(d."mkt_content" AS VARCHAR(500)) AS "mkt_content",
    CAST(d."mkt_campaign" AS VARCHAR(255)) AS "mkt_campaign",
    CAST(d."se_category" AS VARCHAR(1000)) AS "se_category",
    CAST(d."se_action" AS VARCHAR(1000)) AS "se_action",
    CAST(d."se_label" AS VARCHAR(4096)) AS "se_label",
    CAST(d."se_property" AS VARCHAR(1000)) AS "se_property",
    d."se_value" AS "se_value",
    CAST(d."tr_orderid" AS VARCHAR(255)) AS "tr_orderid",
    CAST(d."tr_affiliation" AS VARCHAR(255)) AS "tr_affiliation",
    CAST(d."tr_total" AS DECIMAL(18,2)) AS "tr_total",
    CAST(d."tr_tax" AS DECIMAL(18,2)) AS "tr_tax",
    CAST(d."tr_shipping" AS DECIMAL(18,2)) AS "tr_shipping",
    CAST(d."tr_city" AS VARCHAR(255)) AS "tr_city",
    CAST(d."tr_state" AS VARCHAR(255)) AS "tr_state",
    CAST(d."tr_country" AS VARCHAR(255)) AS "tr_country",
    CAST(d."ti_orderid" AS VARCHAR(255)) AS "ti_orderid",
    CAST(d."ti_sku" AS VARCHAR(255)) AS "ti_sku",
    CAST(d."ti_name" AS VARCHAR(255)) AS "ti_name",
    CAST(d."ti_category" AS VARCHAR(255)) AS "ti_category",
    CAST(d."ti_price" AS DECIMAL(18,2)) AS "ti_price",
    d."ti_quantity" AS "ti_quantity",
    d."pp_xoffset_min" AS "pp_xoffset_min",
    d."pp_xoffset_max" AS "pp_xoffset_max",
    d."pp_yoffset_min" AS "pp_yoffset_min",
    d."pp_yoffset_max" AS "pp_yoffset_max",
    CAST(d."useragent" AS VARCHAR(1000)) AS "useragent",
    CAST(d."br_name" AS VARCHAR(50)) AS "br_name",
    CAST(d."br_family" AS VARCHAR(50)) AS "br_family",
    CAST(d."br_version" AS VARCHAR(50)) AS "br_version",
    CAST(d."br_type" AS VARCHAR(50)) AS "br_type",
    CAST(d."br_renderengine" AS VARCHAR(50)) AS "br_renderengine",
    CAST(d."br_lang" AS VARCHAR(255)) AS "br_lang",
    d."br_features_pdf" AS "br_features_pdf",
    d."br_features_flash" AS "br_features_flash",
    d."br_features_java" AS "br_features_java",
    d."br_features_director" AS "br_features_director",
    d."br_features_quicktime" AS "br_features_quicktime",
    d."br_features_realplayer" AS "br_features_realplayer",
    d."br_features_windowsmedia" AS "br_features_windowsmedia",
    d."br_features_gears" AS "br_features_gears",
    d."br_features_silverlight" AS "br_features_silverlight",
    d."br_cookies" AS "br_cookies",
    CAST(d."br_colordepth" AS VARCHAR(12)) AS "br_colordepth",
    d."br_viewwidth" AS "br_viewwidth",
    d."br_viewheight" AS "br_viewheight",
    CAST(d."os_name" AS VARCHAR(50)) AS "os_name",
    CAST(d."os_family" AS VARCHAR(50)) AS "os_family",
    CAST(d."os_manufacturer" AS VARCHAR(50)) AS "os_manufacturer",
    CAST(d."os_timezone" AS VARCHAR(255)) AS "os_timezone",
    CAST(d."dvce_type" AS VARCHAR(50)) AS "dvce_type",
    d."dvce_ismobile" AS "dvce_ismobile",
    d."dvce_screenwidth" AS "dvce_screenwidth",
    d."dvce_screenheight" AS "dvce_screenheight",
    CAST(d."doc_charset" AS VARCHAR(128)) AS "doc_charset",
    d."doc_width" AS "doc_width",
    d."doc_height" AS "doc_height",
    CAST(d."tr_currency" AS CHAR(3)) AS "tr_currency",
    CAST(d."tr_total_base" AS DECIMAL(18,2)) AS "tr_total_base",
    CAST(d."tr_tax_base" AS DECIMAL(18,2)) AS "tr_tax_base",
    CAST(d."tr_shipping_base" AS DECIMAL(18,2)) AS "tr_shipping_base",
    CAST(d."ti_currency" AS CHAR(3)) AS "ti_currency",
    CAST(d."ti_price_base" AS DECIMAL(18,2)) AS "ti_price_base",
    CAST(d."base_currency" AS CHAR(3)) AS "base_currency",
    CAST(d."geo_timezone" AS VARCHAR(64)) AS "geo_timezone",
    CAST(d."mkt_clickid" AS VARCHAR(1000)) AS "mkt_clickid",
    CAST(d."mkt_network" AS VARCHAR(64)) AS "mkt_network",
    CAST(d."etl_tags" AS VARCHAR(500)) AS "etl_tags",
    d."dvce_sent_tstamp" AS "dvce_sent_tstamp",
    CAST(d."refr_domain_userid" AS VARCHAR(128)) AS "refr_domain_userid",
    d."refr_dvce_tstamp" AS "refr_dvce_tstamp",
    CAST(d."domain_sessionid" AS CHAR(128)) AS "domain_sessionid",
    d."derived_tstamp" AS "derived_tstamp",
    CAST(d."event_vendor" AS VARCHAR(1000)) AS "event_vendor",
    CAST(d."event_name" AS VARCHAR(1000)) AS "event_name",
    CAST(d."event_format" AS VARCHAR(128)) AS "event_format",
    CAST(d."event_version" AS VARCHAR(128)) AS "event_version",
    CAST(d."event_fingerprint" AS VARCHAR(128)) AS "event_fingerprint",
    d."true_tstamp" AS "true_tstamp",
    d."unstruct_event", d."contexts", d."derived_contexts",
    ROW_NUMBER() OVER (
        PARTITION BY d."event_id" ORDER BY d."collector_tstamp", d."event_fingerprint"
    ) AS "id_rank"
FROM (
    SELECT v.*, ROW_NUMBER() OVER (
        PARTITION BY v."event_id", v."event_fingerprint"
        ORDER BY v."collector_tstamp", v."etl_tstamp", v."dvce_sent_tstamp"
    ) AS "copy_rank"
    FROM (
        SELECT "app_id", "platform", "etl_tstamp", "collector_tstamp", "dvce_created_tstamp", "event", "event_id", "txn_id", "name_tracker", "v_tracker", "v_collector", "v_etl", "user_id", "user_ipaddress", "user_fingerprint", "domain_userid", "domain_sessionidx", "network_userid", "geo_country", "geo_region", "geo_city", "geo_zipcode", "geo_latitude", "geo_longitude", "geo_region_name", "ip_isp", "ip_organization", "ip_domain", "ip_netspeed", "page_url", "page_title", "page_referrer", "page_urlscheme", "page_urlhost", "page_urlport", "page_urlpath", "page_urlquery", "page_urlfragment", "refr_urlscheme", "refr_urlhost", "refr_urlport", "refr_urlpath", "refr_urlquery", "refr_urlfragment", "refr_medium", "refr_source", "refr_term", "mkt_medium", "mkt_source", "mkt_term", "mkt_content", "mkt_campaign", "se_category", "se_action", "se_label", "se_property", "se_value", "tr_orderid", "tr_affiliation", "tr_total", "tr_tax", "tr_shipping", "tr_city", "tr_state", "tr_country", "ti_orderid", "ti_sku", "ti_name", "ti_category", "ti_price", "ti_quantity", "pp_xoffset_min", "pp_xoffset_max", "pp_yoffset_min", "pp_yoffset_max", "useragent", "br_name", "br_family", "br_version", "br_type", "br_renderengine", "br_lang", "br_features_pdf", "br_features_flash", "br_features_java", "br_features_director", "br_features_quicktime", "br_features_realplayer", "br_features_windowsmedia", "br_features_gears", "br_features_silverlight", "br_cookies", "br_colordepth", "br_viewwidth", "br_viewheight", "os_name", "os_family", "os_manufacturer", "os_timezone", "dvce_type", "dvce_ismobile", "dvce_screenwidth", "dvce_screenheight", "doc_charset", "doc_width", "doc_height", "tr_currency", "tr_total_base", "tr_tax_base", "tr_shipping_base", "ti_currency", "ti_price_base", "base_currency", "geo_timezone", "mkt_clickid", "mkt_network", "etl_tags", "dvce_sent_tstamp", "refr_domain_userid", "refr_dvce_tstamp", "domain_sessionid", "derived_tstamp", "event_vendor", "event_name", "event_format", "event_version", "event_fingerprint", "true_tstamp", "unstruct_event", "contexts", "derived_contexts", CASE
            WHEN "collector_tstamp" IS NULL THEN 'collector_tstamp: missing'
            WHEN "event_id" IS NULL THEN 'event_id: missing'
            WHEN OCTET_LENGTH("app_id") > 255 THEN 'app_id: over 255 bytes'
            WHEN OCTET_LENGTH("platform") > 255 THEN 'platform: over 255 bytes'
            WHEN OCTET_LENGTH("event") > 128 THEN 'event: over 128 bytes'
            WHEN OCTET_LENGTH("event_id") > 36 THEN 'event_id: over 36 bytes'
            WHEN OCTET_LENGTH("event_id") <> LENGTH("event_id") THEN 'event_id: not ASCII (CHAR column)'
            WHEN OCTET_LENGTH("name_tracker") > 128 THEN 'name_tracker: over 128 bytes'
            WHEN OCTET_LENGTH("v_tracker") > 100 THEN 'v_tracker: over 100 bytes'
            WHEN OCTET_LENGTH("v_collector") > 100 THEN 'v_collector: over 100 bytes'
            WHEN OCTET_LENGTH("v_etl") > 100 THEN 'v_etl: over 100 bytes'
            WHEN OCTET_LENGTH("user_id") > 255 THEN 'user_id: over 255 bytes'
            WHEN OCTET_LENGTH("user_ipaddress") > 128 THEN 'user_ipaddress: over 128 bytes'
            WHEN OCTET_LENGTH("user_fingerprint") > 128 THEN 'user_fingerprint: over 128 bytes'
            WHEN OCTET_LENGTH("domain_userid") > 128 THEN 'domain_userid: over 128 bytes'
            WHEN OCTET_LENGTH("network_userid") > 128 THEN 'network_userid: over 128 bytes'
            WHEN OCTET_LENGTH("geo_country") > 2 THEN 'geo_country: over 2 bytes'
            WHEN OCTET_LENGTH("geo_country") <> LENGTH("geo_country") THEN 'geo_country: not ASCII (CHAR column)'
            WHEN OCTET_LENGTH("geo_region") > 3 THEN 'geo_region: over 3 bytes'
            WHEN OCTET_LENGTH("geo_region") <> LENGTH("geo_region") THEN 'geo_region: not ASCII (CHAR column)'
            WHEN OCTET_LENGTH("geo_city") > 75 THEN 'geo_city: over 75 bytes'
            WHEN OCTET_LENGTH("geo_zipcode") > 15 THEN 'geo_zipcode: over 15 bytes'
            WHEN OCTET_LENGTH("geo_region_name") > 100 THEN 'geo_region_name: over 100 bytes'
            WHEN OCTET_LENGTH("ip_isp") > 100 THEN 'ip_isp: over 100 bytes'
            WHEN OCTET_LENGTH("ip_organization") > 128 THEN 'ip_organization: over 128 bytes'
            WHEN OCTET_LENGTH("ip_domain") > 128 THEN 'ip_domain: over 128 bytes'
            WHEN OCTET_LENGTH("ip_netspeed") > 100 THEN 'ip_netspeed: over 100 bytes'
            WHEN OCTET_LENGTH("page_url") > 10000 THEN 'page_url: over 10000 bytes'
            WHEN OCTET_LENGTH("page_title") > 2000 THEN 'page_title: over 2000 bytes'
            WHEN OCTET_LENGTH("page_referrer") > 10000 THEN 'page_referrer: over 10000 bytes'
            WHEN OCTET_LENGTH("page_urlscheme") > 16 THEN 'page_urlscheme: over 16 bytes'
            WHEN OCTET_LENGTH("page_urlhost") > 255 THEN 'page_urlhost: over 255 bytes'
            WHEN OCTET_LENGTH("page_urlpath") > 3000 THEN 'page_urlpath: over 3000 bytes'
            WHEN OCTET_LENGTH("page_urlquery") > 6000 THEN 'page_urlquery: over 6000 bytes'
            WHEN OCTET_LENGTH("page_urlfragment") > 3000 THEN 'page_urlfragment: over 3000 bytes'
            WHEN OCTET_LENGTH("refr_urlscheme") > 16 THEN 'refr_urlscheme: over 16 bytes'
            WHEN OCTET_LENGTH("refr_urlhost") > 255 THEN 'refr_urlhost: over 255 bytes'
            WHEN OCTET_LENGTH("refr_urlpath") > 6000 THEN 'refr_urlpath: over 6000 bytes'
            WHEN OCTET_LENGTH("refr_urlquery") > 6000 THEN 'refr_urlquery: over 6000 bytes'
            WHEN OCTET_LENGTH("refr_urlfragment") > 3000 THEN 'refr_urlfragment: over 3000 bytes'
            WHEN OCTET_LENGTH("refr_medium") > 25 THEN 'refr_medium: over 25 bytes'
            WHEN OCTET_LENGTH("refr_source") > 50 THEN 'refr_source: over 50 bytes'
            WHEN OCTET_LENGTH("refr_term") > 255 THEN 'refr_term: over 255 bytes'
            WHEN OCTET_LENGTH("mkt_medium") > 255 THEN 'mkt_medium: over 255 bytes'
            WHEN OCTET_LENGTH("mkt_source") > 255 THEN 'mkt_source: over 255 bytes'
            WHEN OCTET_LENGTH("mkt_term") > 255 THEN 'mkt_term: over 255 bytes'
            WHEN OCTET_LENGTH("mkt_content") > 500 THEN 'mkt_content: over 500 bytes'
            WHEN OCTET_LENGTH("mkt_campaign") > 255 THEN 'mkt_campaign: over 255 bytes'
            WHEN OCTET_LENGTH("se_category") > 1000 THEN 'se_category: over 1000 bytes'
            WHEN OCTET_LENGTH("se_action") > 1000 THEN 'se_action: over 1000 bytes'
            WHEN OCTET_LENGTH("se_label") > 4096 THEN 'se_label: over 4096 bytes'
            WHEN OCTET_LENGTH("se_property") > 1000 THEN 'se_property: over 1000 bytes'
            WHEN OCTET_LENGTH("tr_orderid") > 255 THEN 'tr_orderid: over 255 bytes'
            WHEN OCTET_LENGTH("tr_affiliation") > 255 THEN 'tr_affiliation: over 255 bytes'
            WHEN ABS("tr_total") >= 1.0E16 THEN 'tr_total: out of DECIMAL(18,2) range'
            WHEN ABS("tr_tax") >= 1.0E16 THEN 'tr_tax: out of DECIMAL(18,2) range'
            WHEN ABS("tr_shipping") >= 1.0E16 THEN 'tr_shipping: out of DECIMAL(18,2) range'
            WHEN OCTET_LENGTH("tr_city") > 255 THEN 'tr_city: over 255 bytes'
            WHEN OCTET_LENGTH("tr_state") > 255 THEN 'tr_state: over 255 bytes'
            WHEN OCTET_LENGTH("tr_country") > 255 THEN 'tr_country: over 255 bytes'
            WHEN OCTET_LENGTH("ti_orderid") > 255 THEN 'ti_orderid: over 255 bytes'
            WHEN OCTET_LENGTH("ti_sku") > 255 THEN 'ti_sku: over 255 bytes'
            WHEN OCTET_LENGTH("ti_name") > 255 THEN 'ti_name: over 255 bytes'
            WHEN OCTET_LENGTH("ti_category") > 255 THEN 'ti_category: over 255 bytes'
            WHEN ABS("ti_price") >= 1.0E16 THEN 'ti_price: out of DECIMAL(18,2) range'
            WHEN OCTET_LENGTH("useragent") > 1000 THEN 'useragent: over 1000 bytes'
            WHEN OCTET_LENGTH("br_name") > 50 THEN 'br_name: over 50 bytes'
            WHEN OCTET_LENGTH("br_family") > 50 THEN 'br_family: over 50 bytes'
            WHEN OCTET_LENGTH("br_version") > 50 THEN 'br_version: over 50 bytes'
            WHEN OCTET_LENGTH("br_type") > 50 THEN 'br_type: over 50 bytes'
            WHEN OCTET_LENGTH("br_renderengine") > 50 THEN 'br_renderengine: over 50 bytes'
            WHEN OCTET_LENGTH("br_lang") > 255 THEN 'br_lang: over 255 bytes'
            WHEN OCTET_LENGTH("br_colordepth") > 12 THEN 'br_colordepth: over 12 bytes'
            WHEN OCTET_LENGTH("os_name") > 50 THEN 'os_name: over 50 bytes'
            WHEN OCTET_LENGTH("os_family") > 50 THEN 'os_family: over 50 bytes'
            WHEN OCTET_LENGTH("os_manufacturer") > 50 THEN 'os_manufacturer: over 50 bytes'
            WHEN OCTET_LENGTH("os_timezone") > 255 THEN 'os_timezone: over 255 bytes'
            WHEN OCTET_LENGTH("dvce_type") > 50 THEN 'dvce_type: over 50 bytes'
            WHEN OCTET_LENGTH("doc_charset") > 128 THEN 'doc_charset: over 128 bytes'
            WHEN OCTET_LENGTH("tr_currency") > 3 THEN 'tr_currency: over 3 bytes'
            WHEN OCTET_LENGTH("tr_currency") <> LENGTH("tr_currency") THEN 'tr_currency: not ASCII (CHAR column)'
            WHEN ABS("tr_total_base") >= 1.0E16 THEN 'tr_total_base: out of DECIMAL(18,2) range'
            WHEN ABS("tr_tax_base") >= 1.0E16 THEN 'tr_tax_base: out of DECIMAL(18,2) range'
            WHEN ABS("tr_shipping_base") >= 1.0E16 THEN 'tr_shipping_base: out of DECIMAL(18,2) range'
            WHEN OCTET_LENGTH("ti_currency") > 3 THEN 'ti_currency: over 3 bytes'
            WHEN OCTET_LENGTH("ti_currency") <> LENGTH("ti_currency") THEN 'ti_currency: not ASCII (CHAR column)'
            WHEN ABS("ti_price_base") >= 1.0E16 THEN 'ti_price_base: out of DECIMAL(18,2) range'
            WHEN OCTET_LENGTH("base_currency") > 3 THEN 'base_currency: over 3 bytes'
            WHEN OCTET_LENGTH("base_currency") <> LENGTH("base_currency") THEN 'base_currency: not ASCII (CHAR column)'
            WHEN OCTET_LENGTH("geo_timezone") > 64 THEN 'geo_timezone: over 64 bytes'
            WHEN OCTET_LENGTH("mkt_clickid") > 1000 THEN 'mkt_clickid: over 1000 bytes'
            WHEN OCTET_LENGTH("mkt_network") > 64 THEN 'mkt_network: over 64 bytes'
            WHEN OCTET_LENGTH("etl_tags") > 500 THEN 'etl_tags: over 500 bytes'
            WHEN OCTET_LENGTH("refr_domain_userid") > 128 THEN 'refr_domain_userid: over 128 bytes'
            WHEN OCTET_LENGTH("domain_sessionid") > 128 THEN 'domain_sessionid: over 128 bytes'
            WHEN OCTET_LENGTH("domain_sessionid") <> LENGTH("domain_sessionid") THEN 'domain_sessionid: not ASCII (CHAR column)'
            WHEN OCTET_LENGTH("event_vendor") > 1000 THEN 'event_vendor: over 1000 bytes'
            WHEN OCTET_LENGTH("event_name") > 1000 THEN 'event_name: over 1000 bytes'
            WHEN OCTET_LENGTH("event_format") > 128 THEN 'event_format: over 128 bytes'
            WHEN OCTET_LENGTH("event_version") > 128 THEN 'event_version: over 128 bytes'
            WHEN OCTET_LENGTH("event_fingerprint") > 128 THEN 'event_fingerprint: over 128 bytes'
        END AS "reject_reason"
        FROM "atomic"."events_staging"
    ) AS v
    WHERE v."reject_reason" IS NULL
) AS d
WHERE d."copy_rank" = 1
