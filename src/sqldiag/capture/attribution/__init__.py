"""From traced allocations to the categories of the design."""
