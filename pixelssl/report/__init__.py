"""Run reports: figures of what dense features learned, training curves, and the self-contained report.html."""
