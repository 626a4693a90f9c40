"""What the kernel saw happen inside one sandbox, recorded from the host as it happened.

Two recorders, each in its own harness thread, both started before the AI system starts:
`procconn` (fork, exec and exit of every process, from the proc connector) and `fanotify`
(every file a process opens or maps for execution, and every write). The judge reads lineage,
program identity and the tool task's writer from this record instead of from anything a
process inside can rewrite (its environment, its parent after reparenting, its own files).
A recorder that cannot run (no root, refused by the kernel) or lost events says so, and the
judge then fails closed or falls back to weaker evidence, labelled as such.
"""
