"""Bone density along planned screw trajectories (pedicle screws): ``analyze_screws``."""
