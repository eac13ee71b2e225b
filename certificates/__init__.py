"""Calibration certificates (DCC XML) and test reports: parse, validate (XSD + rules), build from JSON, render."""
