"""Tracking: everything MLflow. The store and its checks, a run's life, what it logs, the
background worker, the tracked model, and the PostgreSQL server of the team setup."""
