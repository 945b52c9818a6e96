"""Transform: canonicalize and enrich CloudFront log lines into canonical events.

Pure: this package never imports boto3 or pyarrow.
"""
