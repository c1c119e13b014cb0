"""Scheduled workflows (proactive operations): each a Temporal Schedule's action.

A scheduled job is a workflow that evaluates something (an activity), routes what it found as
alerts (``findings.route``: the normal incident path) and records its run (``schedules.finish``:
metrics). ``run_job`` is that story once; each workflow names its evaluation.
"""
