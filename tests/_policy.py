"""Shared test settings.

Randomised statistical tests (the policy, written once): every such test fixes its seed,
so it is deterministic; its tolerance is z times the Monte Carlo standard error computed
inside the test, with z = 4 (a two-sided false-alarm rate of about 6e-5 per compared
quantity for a fresh seed), so a failure means a real discrepancy, not bad luck.
"""

Z = 4.0
