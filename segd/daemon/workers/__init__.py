"""The classes Ray runs as segd's actors: each actor shell, with segd's logging set up in
its worker process first (``segd.logs.worker_setup``), one module per shell so that a
worker imports only its own (a shard worker needs neither SQLite nor the channels).

Not Ray's ``worker_process_setup_hook``: a job with any ``runtime_env`` needs workers
started for that env, so it cannot use the ones the raylet prestarts (one per CPU, no env),
which then idle while new ones start. Measured on a private 2-CPU cluster, 2 actors of
``num_cpus=0.01``: ready 3.7-4.5 s after they were asked for with the hook, a third worker
process started and left idle; 0.05 s without, on the prestarted workers. The subclasses
keep their shells' names, so Ray names their processes as before (``ray::UserShard``).
"""
