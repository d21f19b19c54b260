"""The socket face: the sans-IO wire protocol and the Python clients."""
