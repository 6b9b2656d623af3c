"""samestory's engine: from a raw article to a duplicate and story verdict."""
