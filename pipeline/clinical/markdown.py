"""Markdown for the reports people sign off (the bundle report, the archive validation report).

This module must not import tensorflow, keras or onnx.
"""

from __future__ import annotations


def markdown_cell(text: object) -> str:
    """Text as one Markdown table cell: a '|' escaped (GitHub's tables keep it, even in code), a newline a space."""
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")
