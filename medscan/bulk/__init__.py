"""Bulk runs: a ZIP of studies in, a triage report (XLSX, CSV) out, synchronously or queued."""
