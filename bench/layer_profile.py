"""Where a preset's training time goes: images/s of its real fit, and each layer's share of a step.

    .venv/bin/python bench/layer_profile.py                    # the `best` preset
    .venv/bin/python bench/layer_profile.py +experiment=cnn    # any overrides

Each layer is timed on its own (forward and backward, on a batch of the preset's size, in one
tf.function), so the shares say which kinds of layer cost what; their sum next to the real
step's time shows what the per-layer view misses (the optimizer update, dispatch). The
convolutions' GFLOP/s is 2 x multiply-adds (forward) x 3 (backward: twice the forward) over
their time. float32, as the preset trains here. Appends the table to RESULTS.md.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cpu import cpu_line, publish  # noqa: E402  (bench/ is on sys.path as the script's directory)

from mnist_exp.experiment import compose_config  # noqa: E402
from mnist_exp.training import hardware  # noqa: E402

ROUNDS = 20


def conv_multiply_adds(layer) -> int:
    _, h, w, c_out = layer.output.shape
    k_h, k_w = layer.kernel_size
    return h * w * c_out * k_h * k_w * layer.input.shape[-1]


def layer_seconds(layer, batch: int) -> float:
    """Seconds for one forward and backward pass of `layer` alone on a batch."""
    import tensorflow as tf

    x = tf.random.uniform((batch, *layer.input.shape[1:]))

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        return tape.gradient(y, [x, *layer.trainable_variables])

    step(x)  # trace
    start = time.perf_counter()
    for _ in range(ROUNDS):
        step(x)
    return (time.perf_counter() - start) / ROUNDS


def main(overrides: list[str]) -> None:
    cfg = compose_config(overrides or ["+experiment=best"])
    hardware.use_onednn_if_it_pays(convolutional=cfg.model.family == "cnn")
    import keras

    from mnist_exp.training import callbacks, data, models, train
    from mnist_exp.training.mnist import load_mnist

    keras.mixed_precision.set_global_policy("float32")
    model = models.build_model(cfg.model)
    train.compile_model(model, cfg.train, 12_800)
    batch = cfg.train.batch_size
    mnist = load_mnist(cfg.data.cache_dir)
    prepared = data.prepare(mnist, limit_train=16_000, limit_test=100)
    timer = callbacks.EpochTimer(12_800)
    model.fit(prepared.x_train, prepared.y_train_cat, batch_size=batch, epochs=2,
              validation_split=0.2, callbacks=[timer], verbose=0)  # fmt: skip
    history = model.history.history
    per_second = history["train_samples_per_second"][-1]  # the 2nd epoch: traced already
    step = batch / per_second

    by_kind: dict[str, float] = defaultdict(float)
    conv_seconds = conv_flops = 0.0
    for layer in model.layers:
        seconds = layer_seconds(layer, batch)
        by_kind[type(layer).__name__] += seconds
        if isinstance(layer, keras.layers.Conv2D):
            conv_seconds += seconds
            conv_flops += 6 * conv_multiply_adds(layer) * batch
    total = sum(by_kind.values())
    epoch = math.ceil(48_000 / batch) * step
    lines = [
        f"\n## Where the time goes: {' '.join(overrides) or '+experiment=best'}\n",
        cpu_line(),
        f"Load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; float32, batch {batch}.\n",
        f"Real fit: **{per_second:.0f} training images/s** ({step * 1000:.1f} ms per step, "
        f"{epoch:.1f} s per 48k-image epoch).\n",
        "| layers | ms per step (fwd+bwd, alone) | share |",
        "|---|---:|---:|",
    ]
    for kind, seconds in sorted(by_kind.items(), key=lambda item: -item[1]):
        lines.append(f"| {kind} | {seconds * 1000:.2f} | {seconds / total:.0%} |")
    lines += [
        f"| sum of the layers alone | {total * 1000:.2f} | |",
        f"| the real step (with the optimizer update) | {step * 1000:.2f} | |",
        "",
        f"Convolutions: {conv_seconds / total:.0%} of the layers' time, "
        f"{conv_flops / conv_seconds / 1e9:.0f} GFLOP/s counted as direct convolutions "
        "(2 cores' float32 peak is ~32 FLOP per cycle each: ~200-240 GFLOP/s at 3-3.7 GHz; "
        "oneDNN may compute fewer, e.g. by Winograd).",
    ]
    publish(lines, ROOT / "bench" / "RESULTS.md")


if __name__ == "__main__":
    main(sys.argv[1:])
