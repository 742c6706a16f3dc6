"""Empirical NTK features of real encoders and the linearized runs built on them."""
