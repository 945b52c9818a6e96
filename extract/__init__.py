"""Extract: read CloudFront log objects into lines with their source coordinates.

Importable without pyarrow (Lambda cold starts).
"""
