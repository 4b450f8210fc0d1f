"""The command line: argument parsing and one module per verb that is more than a call."""
