"""Reading finished runs: comparisons and figures."""
