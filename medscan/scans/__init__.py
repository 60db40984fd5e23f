"""Scans: a patient's study files, their download, analysis and report."""
