"""Reports a person reads: the HTML validation report and the evaluation plots.

May import `mlops.io` and `mlops.core`; the stages call it.
"""
