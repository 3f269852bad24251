"""``trio-replica demo``: write from many clients, SIGKILL mid-write, recover, check.

The demo runs in two processes. The parent (:mod:`.parent`) prepares the
data directory (:mod:`.workdir`), starts a child process running the writer
(:mod:`.writer`: a replica of the metadata state machine fed by many
concurrent clients, printing every acknowledged op), shows the progress,
kills the child with SIGKILL after a seeded random number of acks, recovers
the directory itself and checks the result (:mod:`.consistency`). The
command line is in :mod:`.command`.
"""
