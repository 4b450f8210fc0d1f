"""The kernel a user hands over: what kind it is, its load plan, its request header."""
