"""The one exception type for bad user input: the CLI prints its message and exits with code 2."""


class GraftcvError(Exception):
    """Bad input or an unusable setting, explained in one sentence."""
