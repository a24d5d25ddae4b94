"""Per-epoch metrics into the active run: MLflow's Keras callback, and epochs a kill left out."""

from __future__ import annotations

from mnist_exp.tracking.uris import is_local_store


def epoch_metrics_callback(resumed: bool = False):
    """MLflow's Keras callback: per-epoch loss/accuracy/val_* with step=epoch, model_summary.txt.

    Keras numbers a resumed fit's epochs from where it resumed, so the steps continue.
    """
    import mlflow.keras

    local = is_local_store(mlflow.get_tracking_uri())

    class EpochMetrics(mlflow.keras.MlflowCallback):
        def on_train_begin(self, logs=None):
            # A resumed run has its optimizer params and summary; the learning rate restored
            # from the checkpoint would be a changed param, which MLflow refuses.
            if not resumed:
                super().on_train_begin(logs)

        # Keras runs validation through evaluate(), which would log every epoch's val metrics a
        # second time as `validation_*` at step 0; fit's own val_* already carry them per epoch.
        def on_test_end(self, logs=None):
            pass

        # Into a local store synchronously, where MLflow's is async: ending a run shuts MLflow's
        # async queue down, which waited ~0.5 s per job, and from the background worker would
        # race with the next job's logging; one small batch per epoch costs milliseconds. To a
        # server asynchronously, so that training goes on while an outage is waited out
        # (outage.py) instead of stalling in each request's retries.
        def on_epoch_end(self, epoch, logs=None):
            if logs:
                mlflow.log_metrics(logs, step=epoch, synchronous=local)

    return EpochMetrics()


def log_missing_epochs(history: dict[str, list[float]], epochs: int) -> int:
    """Log the first `epochs` epochs of `history` that the active run lacks (a kill can come
    after an epoch is checkpointed and before its metrics reach MLflow); how many were."""
    import mlflow
    from mlflow import MlflowClient

    run_id = mlflow.active_run().info.run_id
    logged = {m.step for m in MlflowClient().get_metric_history(run_id, "loss")}
    missing = [epoch for epoch in range(epochs) if epoch not in logged]
    for epoch in missing:
        mlflow.log_metrics({k: v[epoch] for k, v in history.items() if epoch < len(v)}, step=epoch)
    return len(missing)
