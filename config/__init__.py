"""Default configuration and data files shipped with clickstream-etl.

``default.toml`` holds every setting with its documented default; ``referers.json`` is the
referer dataset used by ``transform.enrichments.referer``.  The typed loader lives in ``pipeline.config``.
"""
