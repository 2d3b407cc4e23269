"""An excerpt of MLflow 3.18.0's tracking store models (mlflow/store/tracking/dbmodels/models.py,
mlflow/entities/lifecycle_stage.py and mlflow/utils/time.py of the PyPI package mlflow-skinny
3.18.0; https://github.com/mlflow/mlflow, Apache-2.0, Copyright 2018 Databricks, Inc.): the
experiments, runs, metrics and params tables as MLflow declares them. Relationships, docstrings
and methods are left out, and the run status and source type lists are written out; columns,
types, defaults and constraints are as published."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import declarative_base

Base: Any = declarative_base()

DEFAULT_WORKSPACE_NAME = "default"
SourceTypes = ["NOTEBOOK", "JOB", "LOCAL", "UNKNOWN", "PROJECT"]
RunStatusTypes = ["SCHEDULED", "FAILED", "FINISHED", "RUNNING", "KILLED"]


def get_current_time_millis():
    """
    Returns the time in milliseconds since the epoch as an integer number.
    """
    return int(time.time() * 1000)


class LifecycleStage:
    ACTIVE = "active"
    DELETED = "deleted"


class SqlExperiment(Base):
    __tablename__ = "experiments"

    experiment_id = Column(Integer, autoincrement=True)
    name = Column(String(256), nullable=False)
    workspace = Column(
        String(63),
        nullable=False,
        default=DEFAULT_WORKSPACE_NAME,
        server_default=sa.text(f"'{DEFAULT_WORKSPACE_NAME}'"),
    )
    artifact_location = Column(String(256), nullable=True)
    lifecycle_stage = Column(String(32), default=LifecycleStage.ACTIVE)
    creation_time = Column(BigInteger(), default=get_current_time_millis)
    last_update_time = Column(BigInteger(), default=get_current_time_millis)

    __table_args__ = (
        CheckConstraint(
            lifecycle_stage.in_([LifecycleStage.ACTIVE, LifecycleStage.DELETED]),
            name="experiments_lifecycle_stage",
        ),
        PrimaryKeyConstraint("experiment_id", name="experiment_pk"),
        UniqueConstraint("workspace", "name", name="uq_experiments_workspace_name"),
    )


class SqlRun(Base):
    __tablename__ = "runs"

    run_uuid = Column(String(32), nullable=False)
    name = Column(String(250))
    source_type = Column(String(20), default="LOCAL")
    source_name = Column(String(500))
    entry_point_name = Column(String(50))
    user_id = Column(String(256), nullable=True, default=None)
    status = Column(String(20), default="SCHEDULED")
    start_time = Column(BigInteger, default=get_current_time_millis)
    end_time = Column(BigInteger, nullable=True, default=None)
    deleted_time = Column(BigInteger, nullable=True, default=None)
    source_version = Column(String(50))
    lifecycle_stage = Column(String(20), default=LifecycleStage.ACTIVE)
    artifact_uri = Column(String(200), default=None)
    experiment_id = Column(Integer, ForeignKey("experiments.experiment_id"))

    __table_args__ = (
        CheckConstraint(source_type.in_(SourceTypes), name="source_type"),
        CheckConstraint(status.in_(RunStatusTypes)),
        CheckConstraint(
            lifecycle_stage.in_([LifecycleStage.ACTIVE, LifecycleStage.DELETED]),
            name="runs_lifecycle_stage",
        ),
        PrimaryKeyConstraint("run_uuid", name="run_pk"),
    )


class SqlMetric(Base):
    __tablename__ = "metrics"
    __table_args__ = (
        PrimaryKeyConstraint(
            "key", "timestamp", "step", "run_uuid", "value", "is_nan", name="metric_pk"
        ),
        Index(f"index_{__tablename__}_run_uuid", "run_uuid"),
        Index(f"index_{__tablename__}_run_uuid_key_step", "run_uuid", "key", "step"),
    )

    key = Column(String(250))
    value = Column(sa.types.Float(precision=53), nullable=False)
    timestamp = Column(BigInteger, default=get_current_time_millis)
    step = Column(BigInteger, default=0, nullable=False)
    is_nan = Column(Boolean(create_constraint=True), nullable=False, default=False)
    run_uuid = Column(String(32), ForeignKey("runs.run_uuid"))


class SqlParam(Base):
    __tablename__ = "params"
    __table_args__ = (
        PrimaryKeyConstraint("key", "run_uuid", name="param_pk"),
        Index(f"index_{__tablename__}_run_uuid", "run_uuid"),
    )

    key = Column(String(250))
    value = Column(String(8000), nullable=False)
    run_uuid = Column(String(32), ForeignKey("runs.run_uuid"))
