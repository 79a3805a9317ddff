"""Writes TensorBoard event files with torch's SummaryWriter, like a training script (run by the tests
in a separate process).

    python tb_writer.py LOGDIR

Phase 1: run ``exp/run-a`` written by two writers (``loss`` steps 0-2 and a text summary; ``lr``),
then waits for a line on stdin. Phase 2: ``loss`` steps 3-5, an HParams session (a nested run ``hp``)."""

import sys

from torch.utils.tensorboard import SummaryWriter

logdir = sys.argv[1]
w1 = SummaryWriter(f"{logdir}/exp/run-a")
w2 = SummaryWriter(f"{logdir}/exp/run-a")  # a second writer of the same run: its own event file
for step in range(3):
    w1.add_scalar("loss", 1.0 / (step + 1), step)
w1.add_text("notes", "phase one", 2)
w2.add_scalar("lr", 0.1, 0)
w1.flush()
w2.flush()
print("phase1", flush=True)
sys.stdin.readline()
for step in range(3, 6):
    w1.add_scalar("loss", 1.0 / (step + 1), step)
w1.add_hparams({"lr": 0.1, "optimizer": "sgd"}, {"hparam/final_loss": 1.0 / 6}, run_name="hp")
w1.close()
w2.close()
print("done", flush=True)
