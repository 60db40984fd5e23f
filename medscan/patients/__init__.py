"""Patients: the people whose studies are stored."""
