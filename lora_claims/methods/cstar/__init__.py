"""Monte-Carlo estimation of the capacity constant C* and its calibrations."""
