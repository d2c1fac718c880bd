"""The one error type both packages raise for bad initializer arguments."""


class InitError(ValueError):
    """A bad argument to an initializer: the message names the argument,
    the accepted values and the fix. Subclasses ``ValueError`` so code written
    against ``torch.nn.init`` (which raises ``ValueError``) keeps working."""
