"""Input log formats (see :mod:`pipeline.formats.cloudfront`)."""
