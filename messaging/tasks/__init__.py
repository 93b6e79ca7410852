"""Tasks owned by positions, grid reports routed by category, deadlines and escalation up the tree."""
