"""Per-profile round logic: how a round is prepared, how uploads add up, how the sum is opened."""
