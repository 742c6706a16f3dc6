"""The audit machinery: claim specs and registry, runner, context, result cache, report."""
