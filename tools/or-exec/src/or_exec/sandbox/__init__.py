"""The sandbox's internals, by the process each module runs in.

In the pool's process (pool.py):
    parent_handle  `ParentHandle`: starts one sandbox parent per tier and talks to it

In the sandbox parent (one per tier: `python -m or_exec.sandbox.parent_main`):
    parent_main    its entry point: isolate, start the helper, preload, make the template
    isolation      its world, set up once (namespaces, read-only host or minimal root)
    rootfs         the minimal root it pivots into (and each job's view of it)
    cgroups        its memory and CPU cgroups, one per slot
    parent_loop    `SandboxParent`: its event loop (jobs in, results out, deadlines)
    jobspace       what it keeps per job, and each job's own file system
    wire           the messages it and the pool exchange; a job's captured output

In the parent's helper process (forked before the heavy imports):
    helper         namespace holders, removal of jobs' files, uid sweeps (`Helper`: the
                   parent's side)

In the template (forked once, clean: it never holds a job's code or output) and each slot's:
    template       forks one child per job (`Template`: the parent's side)

In the job's child:
    child          isolate itself, run the code, exit
    seccomp        the filter it installs

Everywhere: linux (ctypes wrappers). As jobs: probes (what `or-exec doctor` runs).

Nothing here is imported lazily after the parent entered its minimal root: the checkout is not
visible from there.
"""
