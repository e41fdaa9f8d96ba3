"""PayMob: the shapes of its callbacks and answers, and its API client."""
