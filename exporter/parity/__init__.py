"""The equivalence harness: scenarios, metrics, tolerances, first divergence, reports."""
