"""The tutorial's code as written (../shared/seed/mnist_tutorial_ru.md), timed: side (a) of the
benchmark. Two changes only: MNIST comes from our verified cache (Keras's download is offline
here), and the plt.show() cells are left out. `--model cnn` is the same code with our `cnn`
preset's layers. Prints one JSON line.
"""

import argparse
import json
import os
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np  # noqa: E402
from tensorflow import keras  # noqa: E402
from tensorflow.keras.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D  # noqa: E402

imported_at = time.time()  # the benchmark's start-up yardstick: process start to TF imported

parser = argparse.ArgumentParser()
parser.add_argument("--cache", required=True, help="a verified mnist.npz")
parser.add_argument("--model", choices=["dense", "cnn"], default="dense")
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--seed", type=int, default=42)
parser.add_argument("--limit-train", type=int, help="the first N training images only")
args = parser.parse_args()
keras.utils.set_random_seed(args.seed)  # the same seed as our runs, for a fair accuracy check

with np.load(args.cache) as npz:
    (x_train, y_train), (x_test, y_test) = (
        (npz["x_train"][: args.limit_train], npz["y_train"][: args.limit_train]),
        (npz["x_test"], npz["y_test"]),
    )

if args.model == "dense":
    model = keras.Sequential(
        [
            Flatten(input_shape=(28, 28, 1)),
            Dense(128, activation="relu"),
            Dense(10, activation="softmax"),
        ]
    )
else:
    x_train, x_test = x_train[..., np.newaxis], x_test[..., np.newaxis]
    model = keras.Sequential(
        [
            Conv2D(32, 3, activation="relu", input_shape=(28, 28, 1)),
            MaxPooling2D(2),
            Conv2D(64, 3, activation="relu"),
            MaxPooling2D(2),
            Flatten(),
            Dense(128, activation="relu"),
            Dropout(0.5),
            Dense(10, activation="softmax"),
        ]
    )

x_train = x_train / 255
x_test = x_test / 255
y_train_cat = keras.utils.to_categorical(y_train, 10)
y_test_cat = keras.utils.to_categorical(y_test, 10)

model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
fit_started_at = time.time()
start, cpu_start = time.perf_counter(), time.process_time()
model.fit(x_train, y_train_cat, batch_size=32, epochs=args.epochs, validation_split=0.2, verbose=2)
fit_seconds = time.perf_counter() - start
fit_cpu_seconds = time.process_time() - cpu_start  # the work done, which load stretches less
test_loss, test_accuracy = model.evaluate(x_test, y_test_cat)

pred = np.argmax(model.predict(x_test), axis=1)
mask = pred == y_test
print(json.dumps({"fit_seconds": fit_seconds, "test_accuracy": test_accuracy,
                  "test_loss": test_loss, "misclassified": int((~mask).sum()),
                  "imported_at": imported_at, "fit_started_at": fit_started_at,
                  "fit_cpu_seconds": fit_cpu_seconds}))  # fmt: skip
