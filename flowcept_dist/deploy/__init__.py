"""The batch job runner: ``flowcept-dist job dask|ray`` (and the templates of ``deploy/`` that call it).

One module per concept:
  config      the FC_* variables, the allocation, every check made before anything starts
  processes   process identity (psutil: PID + create time), process groups, ordered stop, sweep
  launchers   srun / pbsdsh / mpiexec / ssh / local: a command on another node
  agent       the node agent the launcher runs on each node (a role: dask-worker, ray-node)
  services    Redis, the consumer process, their stop; standalone: the same outside jobs
  engines     Dask and Ray: start on every node, stop in order
  checks      readiness waits and the end-of-job summary
  job         the whole job: setup, script, signals, stop sequence, sweep, summary
  ray_driver  runs a Ray script with the Flowcept runtime_env (FC_RAY_WRAP)
Importing this package imports nothing else.
"""
