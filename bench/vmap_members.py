"""Seeds stacked with jax.vmap against one single-threaded process per core, on this machine.

    .venv/bin/python bench/vmap_members.py                 # 5 members, 2 epochs each way
    .venv/bin/python bench/vmap_members.py --members 3

The baseline network (784-128-10, Adam, batch 32, 1 500 steps per epoch), each epoch one
`jax.lax.scan` of Keras 3's own `stateless_call` and `optimizer.stateless_apply`, each member
with its own initialisation and shuffling. Timed, each in a fresh process (XLA sizes its thread
pool once, from NPROC):
  (a) one member, 1 thread, alone        (b) one member, 2 threads, alone
  (c) two single-threaded members at once, in two processes (hydra/launcher=together's way)
  (d) N members vmapped, 1 thread         (e) N members vmapped, 2 threads
  (f) two single-threaded processes at once, N members vmapped in each
The figure that decides is the wall time per member-epoch: what N seeds cost. Appends
to RESULTS.md with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cpu import cpu_line, publish  # noqa: E402

STEPS, BATCH = 1500, 32


def epochs_seconds(members: int, epochs: int) -> list[float]:
    """In this process: `members` models trained `epochs` epochs, vmapped if more than one;
    the seconds of each epoch after the first call has compiled."""
    import jax
    import jax.numpy as jnp
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((STEPS * BATCH, 784), dtype=np.float32))
    y = jnp.asarray(rng.integers(0, 10, STEPS * BATCH))
    models, optimizers = [], []
    for seed in range(members):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(128, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])  # fmt: skip
        optimizer = keras.optimizers.Adam()
        optimizer.build(model.trainable_variables)
        models.append(model)
        optimizers.append(optimizer)
    model, optimizer = models[0], optimizers[0]
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    def stacked(variables):
        return [
            jnp.stack([v.value for v in per_member]) for per_member in zip(*variables, strict=True)
        ]

    trainable = stacked([m.trainable_variables for m in models])
    state = stacked([o.variables for o in optimizers])

    def loss(trainable, xb, yb):
        predictions, _ = model.stateless_call(trainable, [], xb)
        return loss_fn(yb, predictions)

    def step(carry, indices):
        trainable, state = carry
        grads = jax.grad(loss)(trainable, x[indices], y[indices])
        trainable, state = optimizer.stateless_apply(state, grads, trainable)
        return (trainable, state), None

    def epoch(trainable, state, order):
        return jax.lax.scan(step, (trainable, state), order.reshape(STEPS, BATCH))[0]

    run = jax.jit(jax.vmap(epoch))  # members on the leading axis, one of them too
    seconds = []
    for _ in range(epochs + 1):  # the first one compiles
        orders = jnp.asarray(np.stack([rng.permutation(STEPS * BATCH) for _ in range(members)]))
        start = time.perf_counter()
        trainable, state = run(trainable, state, orders)
        jax.block_until_ready(trainable)
        seconds.append(time.perf_counter() - start)
    return seconds[1:]


def measured(members: int, threads: int, epochs: int, together: int = 1) -> float:
    """Seconds per epoch of `together` processes at once, each `members` models on `threads`."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "NPROC": str(threads)}
    code = ("import json, sys; sys.path.insert(0, 'bench'); from vmap_members import "
            f"epochs_seconds; print(json.dumps(epochs_seconds({members}, {epochs})))")  # fmt: skip
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
        )  # fmt: skip
        for _ in range(together)
    ]
    per_epoch = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"benchmark step failed (members={members}, threads={threads})")
        per_epoch += json.loads(out.strip().splitlines()[-1])
    return sum(per_epoch) / len(per_epoch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()
    n = args.members
    load_before = os.getloadavg()
    # (what, members per process, threads, processes at once)
    ways = [
        ("(a) one member, 1 thread, alone", 1, 1, 1),
        ("(b) one member, 2 threads, alone", 1, 2, 1),
        ("(c) two single-threaded processes at once, one member each", 1, 1, 2),
        (f"(d) {n} members vmapped, 1 thread", n, 1, 1),
        (f"(e) {n} members vmapped, 2 threads", n, 2, 1),
        (f"(f) two single-threaded processes at once, {n} members vmapped each", n, 1, 2),
    ]
    rows = []
    for what, members, threads, procs in ways:
        print(what, "...", flush=True)
        per_epoch = measured(members, threads, args.epochs, procs)
        rows.append((what, members * procs, per_epoch, per_epoch / (members * procs)))
    lines = [
        "\n## Seeds stacked with jax.vmap, or one process per core "
        f"({time.strftime('%Y-%m-%d %H:%M')})\n",
        f"`bench/vmap_members.py {' '.join(sys.argv[1:])}`: the baseline network, one epoch of "
        f"{STEPS} Adam steps of {BATCH} as one `lax.scan` of Keras's `stateless_call` and "
        f"`stateless_apply`, each way in fresh processes, mean of {args.epochs} epochs after "
        f"compiling. {cpu_line()} Load average before: "
        f"{' '.join(f'{v:.2f}' for v in load_before)}, after: "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}.\n",
        "| way | models at once | s per epoch of a process | wall s per member-epoch |",
        "|---|---:|---:|---:|",
        *(f"| {w} | {m} | {e:.2f} | {c:.3f} |" for w, m, e, c in rows),
        "",
        "*Wall s per member-epoch*: a process's epoch over the models trained at once on the "
        "machine; the lower, the less N seeds cost.",
    ]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
