"""Compatibility only: C4's estimator sizes for real_feature_claims.py (C4-real), which still
imports ``SIZES`` from here. C4's sizes live in ``c04_cstar_gaussian.SPEC.sizes``; delete this
file once C4-real carries its own sizes.
"""

from types import SimpleNamespace

from lora_claims.claims.c04_cstar_gaussian import SPEC

SIZES = {profile: SimpleNamespace(**SPEC.sizes_for(profile)) for profile in SPEC.sizes}
