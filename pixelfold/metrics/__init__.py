"""Evaluation and efficiency metrics.

``from pixelfold.metrics import count_params, count_macs, profile_table``.
"""

from .profile import ModuleCost, count_macs, count_params, module_costs, profile_table

__all__ = ["ModuleCost", "count_macs", "count_params", "module_costs", "profile_table"]
