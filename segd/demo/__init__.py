"""``segd demo``: the live terminal view and the shop workload it streams."""
