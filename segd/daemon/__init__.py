"""The daemon: socket server, op handlers, group commit, router, Ray runtime, replay.

Import the submodules; this package imports nothing, so using one piece (the committer,
say) does not start the others.
"""
