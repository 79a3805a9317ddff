"""TensorBoard integration: each run of a log directory becomes a task (scalars, text summaries,
HParams sessions), read incrementally from the event files while they are written.

- :mod:`.adapter`: :class:`~.adapter.TensorBoardAdapter` (registered as the ``tensorboard``
  adapter: ``Flowcept(adapters=[TensorBoardAdapter(logdir="runs")])``,
  ``flowcept-dist watch tensorboard runs/``);
- :mod:`.events`: the event file reader (TFRecord framing, from a byte offset) and event parsing.

TensorBoard (its protobufs) is imported when the adapter opens. See docs/adapters.md.
"""
