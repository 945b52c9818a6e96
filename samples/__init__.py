"""Sample logs shipped with clickstream-etl (installed as ``clickstream_etl_data.samples``).

See ``samples/README.md``; :func:`pipeline.bundled.sample_logs` finds them wherever the
package is installed.
"""
