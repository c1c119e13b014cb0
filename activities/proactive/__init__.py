"""Proactive operations: the scheduled jobs' evaluations, their findings' routing, reports."""
