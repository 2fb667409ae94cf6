"""Inspection service: the HTTP API warehouse scanners post inspection results to."""
