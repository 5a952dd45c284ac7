"""Local tools: the `mlops` command line, the demo, the in-process runs driver, the local stack
(`mlops up`), status, and the SMTP mail sink.

The top layer: may import everything else.
"""
