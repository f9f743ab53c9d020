"""`forgetlab-report`: compare forgetting across runs and sweeps as tables, plots and one HTML page."""

from forgetlab.report.build import Report, build_report

__all__ = ["Report", "build_report"]
