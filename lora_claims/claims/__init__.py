"""One module per claim: its spec, evaluator and decision rule."""
