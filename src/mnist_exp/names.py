"""Names every layer shares: run tags, environment variables, artifact files, the objective.

A leaf: it imports nothing of ours, so that the lowest layers can use a name that a higher one
defines the meaning of (a sweep's parent run, a search's trial) without importing it.

Our own state and settings live in MNIST_EXP_* variables. MLflow's own (MLFLOW_TRACKING_URI,
MLFLOW_EXPERIMENT_NAME, MLFLOW_HTTP_REQUEST_*) keep the meaning MLflow documents: we may give
them defaults, and never read them for state of ours.
"""

# What a sweeper maximises; the test set never decides anything in a search.
OBJECTIVE = "val_accuracy"

# How a multirun hands its parent run to the jobs: environment variables reach launcher
# subprocesses too, not only jobs run in this process.
PARENT_RUN_ENV = "MNIST_EXP_PARENT_RUN_ID"
# Where a run's link points, when not at the store it logs to: a command run through a
# temporary server (`mnist_exp.server -- CMD`) links to the local store's `make ui` address
# instead, and to nothing ("") when no UI will be there once it ends.
UI_URL_ENV = "MNIST_EXP_UI_URL"
# =1 lets the libraries' own console output through: TensorFlow's C++ start-up lines, its
# retracing warnings, MLflow's progress bars and run links (training.native_logs).
LIBRARY_LOGS_ENV = "MNIST_EXP_LIBRARY_LOGS"
# hydra/launcher=together: the local store its launching process serves to its workers, and
# where (tracking.served_store); to the workers it is still the local store.
SERVED_STORE_ENV = "MNIST_EXP_SERVED_STORE"
SERVED_AT_ENV = "MNIST_EXP_SERVED_AT"
# The address `make ui` serves the local store on.
LOCAL_UI = "http://127.0.0.1:5000"
# A sweep's size and each job's work, for the jobs' progress lines (sweeps.progress).
SWEEP_JOBS_ENV = "MNIST_EXP_SWEEP_JOBS"
SWEEP_WORK_ENV = "MNIST_EXP_SWEEP_WORK"
# How long a tracking server may be away before a run gives up on it, in seconds (90 unset).
SERVER_PATIENCE_ENV = "MNIST_EXP_SERVER_PATIENCE"
# The server this process (and the launcher workers it starts) has reached: from then on, its
# being away is an outage to wait out, not a typo (tracking.outage).
SERVER_SEEN_ENV = "MNIST_EXP_SERVER_SEEN"
# MLflow's tag that makes a run a child of a sweep's parent run.
PARENT_TAG = "mlflow.parentRunId"
# A run's description in the MLflow UI.
NOTE_TAG = "mlflow.note.content"

# A sweep's parent run: what makes it the same sweep, so that running it again continues it.
SWEEP_KEY_TAG = "sweep_key"
# A parent run's tag per skipped job: skipped.<run id that had already finished it> = job name.
SKIPPED_TAG = "skipped."
# The other side of it, on the finished run: in_sweep.<parent run id> = "skipped". MLflow keeps
# one parent per run, so a run that a later sweep skipped is that sweep's by this tag.
IN_SWEEP_TAG = "in_sweep."
# On a run that a later process resumed from its checkpoint: from which epoch, after what.
RESUMED_TAG = "resumed"
# On a run whose checkpoint could not be read: when and why it trained again from epoch 0, and
# that its steps up to there were logged twice (MLflow keeps every value; the later one is new).
RESTARTED_TAG = "restarted_from_epoch_0"

# Every run: what it is apart from its seed, as an id and as its run name without the seed, so
# that MLflow's UI can group a variant's seeds too (identity.variant_id, variant_name).
VARIANT_TAG = "variant"
VARIANT_NAME_TAG = "variant_name"

# A search's child runs: which trial a run is, and the epoch after which a pruned one stopped.
TRIAL_TAG = "optuna_trial"
STUDY_TAG = "optuna_study"
PRUNED_TAG = "pruned_at_epoch"
# A search's re-run of one of its best trials on a fresh seed: the trial's number.
CONFIRM_TAG = "confirm"
# A child run the search's pruner stopped early: KILLED in MLflow, but a result, not a loss.
PRUNED = "PRUNED"

# Per run: the counts compare reads back.
CONFUSION_MATRIX_FILE = "confusion_matrix.json"
# The end-of-sweep summary, every job with its status, kept with the sweep's parent run.
SUMMARY_FILE = "sweep_summary.txt"

# MLflow's own variables for a tracking server's basic-auth credentials (its clients read them).
USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
# A credentials file (the KEY=VALUE lines `mnist_exp.server --auth` writes) that our processes
# read into the two above: a path, not a secret, so it can be handed to Ray's tasks, whose
# environment is `ray start`'s and not the sweep's.
CREDENTIALS_ENV = "MNIST_EXP_CREDENTIALS"
