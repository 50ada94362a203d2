"""Readers and writers of the data file formats (CSV, TSV, XML)."""

from impex.formats.readers import Layout, Record, ScanResult, iter_records, scan, sniff_header
from impex.formats.writers import neutralise_formula, write_rows

__all__ = ["Layout", "Record", "ScanResult", "iter_records", "neutralise_formula", "scan", "sniff_header", "write_rows"]
