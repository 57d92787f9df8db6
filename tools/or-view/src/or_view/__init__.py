"""or-view: look at trajectories (terminal and static HTML) and lint them."""
