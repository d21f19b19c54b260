"""A shard: the user actors of one hash range (``core``) and its Ray actor shell (``shell``)."""
